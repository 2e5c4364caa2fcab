"""Alignment records of the API as affine matrices, so the geometry never touches field names.

The layout, and how it was verified (BlueBrain/Atlas-Download-Tools at commit
c943f7432bd70467f4cdc9e977b6dc55ab49774b, "atldld" below):

- ``src/atldld/constants.py`` ``AFFINE_TEMPLATES`` reads Alignment2d as the 2x3 matrix
  ``[[tsv_00, tsv_01, tsv_04], [tsv_02, tsv_03, tsv_05]]`` (``tvs_*`` likewise) and Alignment3d
  as the 3x4 matrix ``[[tvr_00, tvr_01, tvr_02, tvr_09], [tvr_03, tvr_04, tvr_05, tvr_10],
  [tvr_06, tvr_07, tvr_08, tvr_11]]`` (``trv_*`` likewise): row-major linear part, translation
  in the last fields.
- The raw RMA records it recorded from the live API (``tests/data/rma_all/SectionImage.json``,
  image 101945191; ``tests/data/rma_all/SectionDataSet.json``, alignment3d 348398583) confirm
  it independently: read this way, ``tvs`` is the inverse of ``tsv`` and ``trv`` the inverse of
  ``tvr`` to the records' six significant digits, and the transposed reading fails that check
  on the translation (our tests repeat it).
- ``tests/data/sync/*`` holds matrices read this way with the live services' answers for them;
  ``image_to_reference`` and ``reference_to_image`` reproduce those answers to 1e-9.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from crawler.errors import NoAlignmentError

Matrix = NDArray[np.float64]

# Field suffixes in matrix order: rows of the linear part, translation last.
LAYOUT_2D: tuple[tuple[str, ...], ...] = (("00", "01", "04"), ("02", "03", "05"))
LAYOUT_3D: tuple[tuple[str, ...], ...] = (
    ("00", "01", "02", "09"),
    ("03", "04", "05", "10"),
    ("06", "07", "08", "11"),
)


def affine_from_record(
    record: Mapping[str, object] | None,
    prefix: Literal["tsv", "tvs", "tvr", "trv"],
    *,
    owner: str = "the record",
) -> Matrix:
    """Read one affine out of an alignment record, refusing anything absent or not a number.

    The API answers ``"alignment2d": null`` for an image that was never aligned; a matrix of
    zeros or identity would put it somewhere plausible, so we raise instead.
    """
    layout = LAYOUT_2D if prefix in ("tsv", "tvs") else LAYOUT_3D
    if record is None:
        raise NoAlignmentError(f"{owner} has no alignment ({prefix}_* fields)")
    values: list[list[float]] = []
    missing: list[str] = []
    for row in layout:
        values.append([])
        for suffix in row:
            name = f"{prefix}_{suffix}"
            value = record.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                missing.append(name)
                continue
            values[-1].append(float(value))
    if missing:
        raise NoAlignmentError(f"{owner} has an incomplete alignment: {', '.join(missing)}")
    matrix = np.array(values, dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise NoAlignmentError(f"{owner} has a non-finite {prefix}_* alignment")
    return matrix


@dataclass(frozen=True, eq=False)
class Alignment2d:
    """One SectionImage's 2-D affines: ``tsv`` image pixels -> section volume, ``tvs`` back."""

    tsv: Matrix
    tvs: Matrix

    @classmethod
    def from_record(
        cls, record: Mapping[str, object] | None, *, owner: str = "the image"
    ) -> Alignment2d:
        """Both directions of an ``alignment2d`` record (as ``include=alignment2d`` nests it)."""
        return cls(
            affine_from_record(record, "tsv", owner=owner),
            affine_from_record(record, "tvs", owner=owner),
        )


@dataclass(frozen=True, eq=False)
class Alignment3d:
    """One SectionDataSet's 3-D affines: ``tvr`` section volume -> reference µm, ``trv`` back."""

    tvr: Matrix
    trv: Matrix

    @classmethod
    def from_record(
        cls, record: Mapping[str, object] | None, *, owner: str = "the data set"
    ) -> Alignment3d:
        """Both directions of an ``alignment3d`` record (as ``include=alignment3d`` nests it)."""
        return cls(
            affine_from_record(record, "tvr", owner=owner),
            affine_from_record(record, "trv", owner=owner),
        )


def homogeneous(affine: Matrix) -> Matrix:
    """The square form of a 2x3 or 3x4 affine (a ``[0 .. 0 1]`` row added), to compose or invert."""
    bottom = np.zeros((1, affine.shape[1]), dtype=np.float64)
    bottom[0, -1] = 1.0
    return np.vstack([affine, bottom])
