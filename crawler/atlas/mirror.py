"""The synchronization service's answers from a mirror's own files, offline and read-only.

A mirror keeps each data set's records in ``OUT/<id>/dataset.json`` (the SectionDataSet with
its ``alignment3d``, every SectionImage with its ``alignment2d``) and, with ``--with
ontology,annotation``, ``OUT/ccf/structure_graph_1.json`` and ``OUT/ccf/annotation_<R>.nrrd``.
These functions only read them: no network, no manifest, nothing written. They answer in the
shape of the live services (``image_to_reference``, ``reference_to_image``) and add the
structure at the point when the ontology and an annotation volume are there (the finest one,
if several resolutions are mirrored).

What a user can get wrong (an id the mirror does not hold, a damaged file) is a UsageError
naming it; a record without an alignment is a NoAlignmentError, never invented numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crawler.atlas.annotation import Volume, read_volume, structure_at, value_at
from crawler.atlas.imagesync import (
    ImagePoint,
    ReferencePoint,
    full_resolution,
    image_to_reference,
    reference_to_image,
    series_from_records,
)
from crawler.atlas.ontology import Ontology, read_ontology
from crawler.atlas.transforms import Alignment2d, Alignment3d
from crawler.errors import ContentError, NoAlignmentError, UsageError

CCF_DIRECTORY = "ccf"
ONTOLOGY_FILE = "structure_graph_1.json"
_ANNOTATION = re.compile(r"annotation_(\d+)\.nrrd")
_REMIRROR = "it was mirrored before alignments were kept: run 'allen-mirror mirror' again"
_REPAIR = "run 'allen-mirror verify --repair'"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MirroredDataSet:
    """One data set as its ``dataset.json`` keeps it."""

    record: Mapping[str, Any]
    images: list[Mapping[str, Any]]

    @property
    def id(self) -> int:
        return int(self.record["id"])


def read_data_set(out: Path, data_set_id: int) -> MirroredDataSet:
    """The mirrored records of one data set; an id the mirror lacks is a usage error."""
    path = out / str(int(data_set_id)) / "dataset.json"
    if not path.is_file():
        _check_mirror(out)
        raise UsageError(f"no data set {data_set_id} in the mirror at {out}")
    return _load(path)


def find_image(out: Path, image_id: int) -> tuple[MirroredDataSet, Mapping[str, Any]]:
    """The data set holding a SectionImage, and its record, searched in every ``dataset.json``.

    Rows are written one per line with sorted keys, so a byte search for ``"id":N`` (compact,
    as ``crawler/jsoncodec.py`` writes them) or ``"id": N`` (older mirrors) skips every file
    that cannot hold the image without parsing it.
    """
    _check_mirror(out)
    needles = (f'"id":{int(image_id)}'.encode(), f'"id": {int(image_id)}'.encode())
    for path in _data_set_files(out):
        try:
            data = path.read_bytes()
            if not any(needle in data for needle in needles):
                continue
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
        data_set = _load(path)
        for image in data_set.images:
            if image.get("id") == image_id:
                return data_set, image
    raise UsageError(f"no section image {image_id} in the mirror at {out}")


class Structures:
    """The ontology and an annotation volume: which structure holds a reference point.

    One point is read by streaming the file to its voxel (``value_at``: small memory at any
    resolution); arrays of points load the volume once and look up all of them together.
    """

    def __init__(self, ontology: Ontology, annotation: Path) -> None:
        self.ontology = ontology
        self.annotation = annotation
        self._volume: Volume | None = None

    def at(self, x: ArrayLike, y: ArrayLike, z: ArrayLike) -> NDArray[np.int64]:
        """Structure ids at reference points in µm (0 outside the volume or the brain)."""
        if self._volume is None:
            self._volume = _damaged_is_usage(lambda: read_volume(self.annotation))
        return structure_at(self._volume.data, self._volume.resolution_um, x, y, z)

    def at_point(self, x: float, y: float, z: float) -> int:
        """The structure id at one reference point in µm, without loading the volume."""
        return _damaged_is_usage(lambda: value_at(self.annotation, x, y, z))

    def describe(self, structure_id: int) -> dict[str, object]:
        """``structure_id``, ``acronym``, ``name``; null names for 0 or an id not in the graph."""
        structure = self.ontology.by_id.get(structure_id) if structure_id else None
        return {
            "structure_id": structure_id,
            "acronym": structure.acronym if structure else None,
            "name": structure.name if structure else None,
        }


def annotation_file(out: Path) -> Path | None:
    """The finest mirrored ``annotation_<R>.nrrd``, or None."""
    found = []
    for path in (out / CCF_DIRECTORY).glob("annotation_*.nrrd"):
        if match := _ANNOTATION.fullmatch(path.name):
            found.append((int(match[1]), path))
    return min(found)[1] if found else None


def read_structures(out: Path) -> Structures | None:
    """The mirrored ontology and finest annotation, or None unless both are mirrored."""
    ontology_path = out / CCF_DIRECTORY / ONTOLOGY_FILE
    annotation = annotation_file(out)
    if annotation is None or not ontology_path.is_file():
        return None
    return Structures(_damaged_is_usage(lambda: read_ontology(ontology_path)), annotation)


def _damaged_is_usage(read: Callable[[], T]) -> T:
    """A damaged mirror file is the user's to repair, not the API's fault: say how."""
    try:
        return read()
    except ContentError as exc:
        raise UsageError(f"{exc}; {_REPAIR}") from exc


def image_alignments(
    data_set: MirroredDataSet, image: Mapping[str, Any]
) -> tuple[Alignment2d, Alignment3d]:
    """Both alignments of a mirrored image; NoAlignmentError says which one is missing."""
    image_id = image.get("id")
    if "alignment2d" not in image or "alignment3d" not in data_set.record:
        raise NoAlignmentError(f"image {image_id} has no alignment in the mirror: {_REMIRROR}")
    return (
        Alignment2d.from_record(image["alignment2d"], owner=f"image {image_id}"),
        Alignment3d.from_record(data_set.record["alignment3d"], owner=f"data set {data_set.id}"),
    )


def image_point(
    out: Path, image_id: int, x: ArrayLike, y: ArrayLike, downsample: int = 0
) -> ReferencePoint:
    """Pixels of a mirrored image (of tier ``downsample``) in reference µm (vectorised)."""
    data_set, image = find_image(out, image_id)
    alignment2d, alignment3d = image_alignments(data_set, image)
    number, thickness = image.get("section_number"), data_set.record.get("section_thickness")
    if not isinstance(number, int | float) or not isinstance(thickness, int | float):
        raise NoAlignmentError(f"image {image_id} has no section number or thickness to place it")
    full_x, full_y = full_resolution(x, downsample), full_resolution(y, downsample)
    return image_to_reference(alignment2d, alignment3d, number, thickness, full_x, full_y)


def reference_point(
    out: Path, data_set_id: int, x: ArrayLike, y: ArrayLike, z: ArrayLike
) -> ImagePoint:
    """Reference µm to a mirrored data set's nearest section and pixel (vectorised)."""
    data_set = read_data_set(out, data_set_id)
    if "alignment3d" not in data_set.record:
        raise NoAlignmentError(
            f"data set {data_set_id} has no alignment in the mirror: {_REMIRROR}"
        )
    return reference_to_image(series_from_records(data_set.record, data_set.images), x, y, z)


def locate_image(
    out: Path, image_id: int, x: float, y: float, downsample: int = 0
) -> dict[str, object]:
    """The live ``image_to_reference`` answer for one pixel, plus the structure there."""
    point = image_point(out, image_id, x, y, downsample)
    answer: dict[str, object] = {
        "image_id": image_id,
        "x": float(point.x),
        "y": float(point.y),
        "z": float(point.z),
    }
    return _with_structure(out, answer, float(point.x), float(point.y), float(point.z))


def locate_reference(
    out: Path, data_set_id: int, x: float, y: float, z: float
) -> dict[str, object]:
    """The live ``reference_to_image`` answer for one point, plus the structure at the point."""
    hit = reference_point(out, data_set_id, x, y, z)
    answer: dict[str, object] = {
        "section_data_set_id": hit.section_data_set_id,
        "section_image_id": int(hit.section_image_id),
        "section_number": int(hit.section_number),
        "x": float(hit.x),
        "y": float(hit.y),
    }
    return _with_structure(out, answer, x, y, z)


def _with_structure(
    out: Path, answer: dict[str, object], x: float, y: float, z: float
) -> dict[str, object]:
    structures = read_structures(out)
    if structures is None:
        return answer
    return {**answer, **structures.describe(structures.at_point(x, y, z))}


def _check_mirror(out: Path) -> None:
    if not out.is_dir():
        raise UsageError(f"no mirror at {out}")


def _data_set_files(out: Path) -> Iterator[Path]:
    """Every data set's ``dataset.json`` (numeric directories), in id order."""
    numbered = [p for p in out.iterdir() if p.name.isdigit() and (p / "dataset.json").is_file()]
    for directory in sorted(numbered, key=lambda p: int(p.name)):
        yield directory / "dataset.json"


def _load(path: Path) -> MirroredDataSet:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}; mirror the data set again") from exc
    record, images = document.get("data_set"), document.get("section_images")
    if not isinstance(record, Mapping) or not isinstance(images, list) or "id" not in record:
        raise UsageError(f"{path} is not a data set record: mirror the data set again")
    return MirroredDataSet(record, [i for i in images if isinstance(i, Mapping)])
