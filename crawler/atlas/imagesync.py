"""The image synchronization service's two questions, answered offline with its own arithmetic.

``image_to_reference`` answers what ``/api/v2/image_to_reference/{image}.json?x=&y=`` does:
``reference = tvr · [tsv · [x, y, 1], section_number × section_thickness, 1]``, in µm, the
axes being the service's x, y, z (posterior, inferior, right). x and y are the full-resolution
pixels the service takes. No offset, no ``section_number - 1``: on the 40 live answers recorded
in BlueBrain/Atlas-Download-Tools (commit c943f7432bd70467f4cdc9e977b6dc55ab49774b,
``tests/data/sync/xy_to_pir/*.json``, data sets of 25 and 50 µm sections) this formula in
float64 gives the service's numbers to 1e-11 µm, and ``section_number - 1`` misses by 25-53 µm.

``reference_to_image`` answers what ``/api/v2/reference_to_image/{space}.json?x=&y=&z=&
section_data_set_ids=`` does for one data set: ``trv`` takes the point into the section volume,
whose third coordinate is a depth in µm; the section whose ``section_number × thickness`` is
nearest that depth is chosen, and its ``tvs`` gives the pixel. The 20 live answers recorded in
the same repository (``tests/data/sync/pir_to_xy/*.json``) agree with this to 1e-11 px. For the
16 whose data set's thickness is recorded, the chosen section is the nearest of that data set's
sections seen anywhere in the recordings (a partial list: the full lists are not recorded), and
points before the first or past the last section get that end section: the service clamps, it
does not refuse. Nearest along the volume's depth is nearest in reference space too (an affine
map keeps parallel planes parallel and scales their distances alike). How the service breaks an
exact tie is not recorded anywhere we found: we take the lower section number, then image id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crawler.atlas.transforms import Alignment2d, Alignment3d
from crawler.errors import NoAlignmentError, UsageError

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


class ReferencePoint(NamedTuple):
    """Reference-space coordinates in µm (0-d arrays for scalar input; ``float()`` them)."""

    x: Floats
    y: Floats
    z: Floats


class ImagePoint(NamedTuple):
    """The nearest section image of a data set and the full-resolution pixel on it."""

    section_data_set_id: int
    section_image_id: Ints
    section_number: Ints
    x: Floats
    y: Floats


@dataclass(frozen=True, eq=False)
class Section:
    """What ``reference_to_image`` needs of one SectionImage."""

    image_id: int
    section_number: int
    alignment: Alignment2d


@dataclass(frozen=True, eq=False)
class SectionSeries:
    """What ``reference_to_image`` needs of one SectionDataSet: its geometry and its sections."""

    data_set_id: int
    section_thickness: float
    alignment: Alignment3d
    sections: tuple[Section, ...]


def image_to_reference(
    alignment2d: Alignment2d,
    alignment3d: Alignment3d,
    section_number: float,
    section_thickness: float,
    x: ArrayLike,
    y: ArrayLike,
) -> ReferencePoint:
    """Full-resolution pixels of one section image -> reference µm, as the live service says.

    Both affines and the section's depth fold into one 3x3 matrix first, so a million points
    cost three multiply-adds per coordinate.
    """
    px, py = _floats(x, y)
    tsv, tvr = alignment2d.tsv, alignment3d.tvr
    depth = float(section_number) * float(section_thickness)
    composed = np.empty((3, 3), dtype=np.float64)
    composed[:, :2] = tvr[:, :2] @ tsv[:, :2]
    composed[:, 2] = tvr[:, :2] @ tsv[:, 2] + tvr[:, 2] * depth + tvr[:, 3]
    rx, ry, rz = (np.asarray(row[0] * px + row[1] * py + row[2]) for row in composed)
    return ReferencePoint(rx, ry, rz)


def reference_to_image(
    series: SectionSeries, x: ArrayLike, y: ArrayLike, z: ArrayLike
) -> ImagePoint:
    """Reference µm -> the data set's nearest section image and its full-resolution pixel.

    Vectorised over points: each point may land on a different section; the sections' ``tvs``
    matrices are stacked once and gathered per point.
    """
    if not series.sections:
        raise NoAlignmentError(f"data set {series.data_set_id} has no aligned section images")
    rx, ry, rz = _floats(x, y, z)
    trv = series.alignment.trv
    u, v, depth = (row[0] * rx + row[1] * ry + row[2] * rz + row[3] for row in trv)

    ordered = sorted(series.sections, key=lambda s: (s.section_number, s.image_id))
    numbers = np.array([s.section_number for s in ordered], dtype=np.int64)
    depths = numbers.astype(np.float64) * float(series.section_thickness)
    chosen = nearest_section(depths, depth)
    tvs = np.stack([s.alignment.tvs for s in ordered])[chosen]
    px = np.asarray(tvs[..., 0, 0] * u + tvs[..., 0, 1] * v + tvs[..., 0, 2])
    py = np.asarray(tvs[..., 1, 0] * u + tvs[..., 1, 1] * v + tvs[..., 1, 2])
    ids = np.array([s.image_id for s in ordered], dtype=np.int64)
    return ImagePoint(
        series.data_set_id, np.asarray(ids[chosen]), np.asarray(numbers[chosen]), px, py
    )


def nearest_section(depths: NDArray[np.float64], depth: NDArray[np.float64]) -> Ints:
    """Index into ascending ``depths`` of the one nearest each ``depth``; a tie goes to the lower.

    Depths before the first or past the last section take that end section, as the live
    service does (it never answers "no section").
    """
    if depths.size == 0:
        raise NoAlignmentError("no sections to choose from")
    if np.isnan(depth).any():
        raise UsageError("reference coordinates must be numbers")
    if depths.size == 1:
        return np.zeros(np.shape(depth), dtype=np.int64)
    above = np.searchsorted(depths, depth, side="left").clip(1, depths.size - 1)
    below = above - 1
    take_above = (depths[above] - depth) < (depth - depths[below])
    return np.where(take_above, above, below).astype(np.int64)


def series_from_records(
    data_set: Mapping[str, object], images: Iterable[Mapping[str, object]]
) -> SectionSeries:
    """A SectionSeries from API records, as the mirror keeps them (SectionDataSet with
    ``alignment3d``, SectionImages with ``alignment2d``): a data set that cannot be placed is
    refused; an image without an alignment or section number cannot be a target and is left out.
    """
    data_set_id = _integer(data_set.get("id"), "SectionDataSet id")
    owner = f"data set {data_set_id}"
    thickness = data_set.get("section_thickness")
    if isinstance(thickness, bool) or not isinstance(thickness, int | float) or thickness <= 0:
        raise NoAlignmentError(f"{owner} has no section_thickness")
    alignment = Alignment3d.from_record(_mapping(data_set.get("alignment3d")), owner=owner)
    sections = []
    for image in images:
        record = _mapping(image.get("alignment2d"))
        number = image.get("section_number")
        if record is None or isinstance(number, bool) or not isinstance(number, int):
            continue
        image_id = _integer(image.get("id"), "SectionImage id")
        sections.append(
            Section(image_id, number, Alignment2d.from_record(record, owner=f"image {image_id}"))
        )
    return SectionSeries(data_set_id, float(thickness), alignment, tuple(sections))


def full_resolution(value: ArrayLike, downsample: int) -> Floats:
    """A tier-``downsample`` pixel coordinate in full-resolution pixels (× 2^downsample)."""
    return np.asarray(value, dtype=np.float64) * float(2 ** _tier(downsample))


def tier_pixel(value: ArrayLike, downsample: int) -> Floats:
    """A full-resolution pixel coordinate in pixels of tier ``downsample`` (÷ 2^downsample)."""
    return np.asarray(value, dtype=np.float64) / float(2 ** _tier(downsample))


def _tier(downsample: int) -> int:
    if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 0:
        raise UsageError(f"downsample must be a whole number >= 0, not {downsample!r}")
    return downsample


def _floats(*values: ArrayLike) -> tuple[Floats, ...]:
    """Coordinates as float64 arrays of one broadcast shape; text or objects are a usage error."""
    try:
        arrays = [np.asarray(value, dtype=np.float64) for value in values]
    except (TypeError, ValueError) as exc:
        raise UsageError(f"coordinates must be numbers: {exc}") from exc
    try:
        return tuple(np.broadcast_arrays(*arrays))
    except ValueError as exc:
        raise UsageError(f"coordinate arrays do not have one shape: {exc}") from exc


def _mapping(value: object) -> Mapping[str, object] | None:
    return value if isinstance(value, Mapping) else None


def _integer(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise NoAlignmentError(f"{what} is missing or not an integer: {value!r}")
    return value
