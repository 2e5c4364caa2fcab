"""Alignment records -> matrices: the layout, checked on a table and on real API records."""

from __future__ import annotations

import numpy as np
import pytest

from crawler.atlas.transforms import Alignment2d, Alignment3d, affine_from_record, homogeneous
from crawler.errors import EXIT_FAILED, NoAlignmentError, exit_code_for

# Real records the live RMA service returned, recorded by BlueBrain/Atlas-Download-Tools at
# commit c943f7432bd70467f4cdc9e977b6dc55ab49774b: tests/data/rma_all/SectionImage.json
# (SectionImage 101945191, its alignment2d 348398605) and tests/data/rma_all/SectionDataSet.json
# (its alignment3d 348398583; the data set id was replaced by 123 in that fixture).
REAL_ALIGNMENT2D = {
    "id": 348398605,
    "section_image_id": 101945191,
    "tsv_00": 1.62929,
    "tsv_01": 0.0480343,
    "tsv_02": -0.0480343,
    "tsv_03": 1.62929,
    "tsv_04": 406.469,
    "tsv_05": 2243.71,
    "tvs_00": 0.61323,
    "tvs_01": -0.0180791,
    "tvs_02": 0.0180791,
    "tvs_03": 0.61323,
    "tvs_04": -208.695,
    "tvs_05": -1383.26,
}
REAL_ALIGNMENT3D = {
    "aligned_id": 123,
    "aligned_type": "DataSet",
    "id": 348398583,
    "trv_00": 0.948631,
    "trv_01": -0.0252548,
    "trv_02": 0.0332274,
    "trv_03": 0.0261118,
    "trv_04": 0.999551,
    "trv_05": 0.014234,
    "trv_06": -0.0336111,
    "trv_07": -0.01411,
    "trv_08": 0.94886,
    "trv_09": 953.568,
    "trv_10": 2078.55,
    "trv_11": -1672.98,
    "tvr_00": 1.05211,
    "tvr_01": 0.0260573,
    "tvr_02": -0.0372341,
    "tvr_03": -0.0280098,
    "tvr_04": 0.999544,
    "tvr_05": -0.0140134,
    "tvr_06": 0.0368521,
    "tvr_07": 0.0157867,
    "tvr_08": 1.05237,
    "tvr_09": -1119.72,
    "tvr_10": -2074.34,
    "tvr_11": 1692.64,
}


def numbered(prefix: str, count: int) -> dict[str, object]:
    """A record whose field NN holds the number NN, so each matrix cell tells where it came from."""
    return {f"{prefix}_{n:02d}": float(n) for n in range(count)}


@pytest.mark.parametrize(
    ("prefix", "row", "col", "field"),
    [
        ("tsv", 0, 0, 0),
        ("tsv", 0, 1, 1),
        ("tsv", 0, 2, 4),
        ("tsv", 1, 0, 2),
        ("tsv", 1, 1, 3),
        ("tsv", 1, 2, 5),
        ("tvs", 1, 2, 5),
        ("tvr", 0, 0, 0),
        ("tvr", 0, 1, 1),
        ("tvr", 0, 2, 2),
        ("tvr", 0, 3, 9),
        ("tvr", 1, 0, 3),
        ("tvr", 1, 1, 4),
        ("tvr", 1, 2, 5),
        ("tvr", 1, 3, 10),
        ("tvr", 2, 0, 6),
        ("tvr", 2, 1, 7),
        ("tvr", 2, 2, 8),
        ("tvr", 2, 3, 11),
        ("trv", 2, 3, 11),
    ],
)
def test_layout(prefix: str, row: int, col: int, field: int) -> None:
    three_d = prefix in ("tvr", "trv")
    matrix = affine_from_record(numbered(prefix, 12 if three_d else 6), prefix)
    assert matrix.shape == ((3, 4) if three_d else (2, 3))
    assert matrix.dtype == np.float64
    assert matrix[row, col] == field


def inverse_error(forward: np.ndarray, backward: np.ndarray) -> float:
    return float(
        np.abs(homogeneous(forward) @ homogeneous(backward) - np.eye(forward.shape[1])).max()
    )


def transposed(matrix: np.ndarray) -> np.ndarray:
    """The other reading of the fields: linear part column-major, translation where it was."""
    other = matrix.copy()
    size = matrix.shape[0]
    other[:, :size] = matrix[:, :size].T
    return other


def test_real_records_are_inverse_pairs_only_in_this_layout() -> None:
    """tvs must undo tsv and trv undo tvr; with six significant digits in the records the
    translation agrees to a hundredth of a pixel or µm, and the transposed reading misses by
    over a hundred."""
    two = Alignment2d.from_record(REAL_ALIGNMENT2D)
    three = Alignment3d.from_record(REAL_ALIGNMENT3D)
    assert inverse_error(two.tsv, two.tvs) < 0.01
    assert inverse_error(three.tvr, three.trv) < 0.01
    assert inverse_error(transposed(two.tsv), transposed(two.tvs)) > 100
    assert inverse_error(transposed(three.tvr), transposed(three.trv)) > 100


def test_real_record_values_land_where_named() -> None:
    two = Alignment2d.from_record(REAL_ALIGNMENT2D)
    three = Alignment3d.from_record(REAL_ALIGNMENT3D)
    assert two.tsv.tolist() == [[1.62929, 0.0480343, 406.469], [-0.0480343, 1.62929, 2243.71]]
    assert two.tvs[0, 2] == -208.695
    assert three.tvr[:, 3].tolist() == [-1119.72, -2074.34, 1692.64]
    assert three.trv[2].tolist() == [-0.0336111, -0.01411, 0.94886, -1672.98]


def test_a_missing_alignment_is_refused_not_invented() -> None:
    with pytest.raises(NoAlignmentError, match="image 7 has no alignment"):
        Alignment2d.from_record(None, owner="image 7")
    with pytest.raises(NoAlignmentError, match="data set 9 has no alignment"):
        Alignment3d.from_record(None, owner="data set 9")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tvs_03": None}, "tvs_03"),
        ({"tsv_04": "406.469"}, "tsv_04"),
        ({"tsv_00": True}, "tsv_00"),
    ],
)
def test_an_incomplete_alignment_names_its_gaps(change: dict[str, object], named: str) -> None:
    record = {**REAL_ALIGNMENT2D, **change}
    with pytest.raises(NoAlignmentError, match=f"incomplete alignment: {named}"):
        Alignment2d.from_record(record)


def test_an_absent_field_is_named() -> None:
    record = {k: v for k, v in REAL_ALIGNMENT3D.items() if k not in ("trv_09", "trv_11")}
    with pytest.raises(NoAlignmentError, match="trv_09, trv_11"):
        Alignment3d.from_record(record)


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(NoAlignmentError, match="non-finite"):
        Alignment2d.from_record({**REAL_ALIGNMENT2D, "tsv_04": float("nan")})


def test_no_alignment_exits_1_not_as_a_usage_error() -> None:
    assert exit_code_for(NoAlignmentError("x")) == EXIT_FAILED
