"""The image synchronization service offline, against answers the live service gave.

Recorded answers: BlueBrain/Atlas-Download-Tools at commit
c943f7432bd70467f4cdc9e977b6dc55ab49774b, ``tests/data/sync/xy_to_pir/<image>_<x>_<y>.json``
(``/api/v2/image_to_reference``) and ``tests/data/sync/pir_to_xy/<data set>_<x>_<y>_<z>.json``
(``/api/v2/reference_to_image``). Each file holds the service's input and answer and the
image's and data set's affines as read by atldld's ``AFFINE_TEMPLATES`` (tsv/tvr for the first,
tvs/trv for the second); the numbers below are copied from them unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from crawler.atlas.imagesync import (
    Section,
    SectionSeries,
    full_resolution,
    image_to_reference,
    nearest_section,
    reference_to_image,
    series_from_records,
    tier_pixel,
)
from crawler.atlas.transforms import Alignment2d, Alignment3d, homogeneous
from crawler.errors import NoAlignmentError, UsageError

Rows = list[list[float]]


def inverse(affine: Rows | np.ndarray) -> np.ndarray:
    """The exact inverse affine, for a direction the recorded files do not carry."""
    matrix = np.asarray(affine, dtype=np.float64)
    return np.linalg.inv(homogeneous(matrix))[:-1]


# tsv of real section images (xy_to_pir files), by image id.
TSV: dict[int, Rows] = {
    101082698: [[1.04897, -0.00827914, -48.3907], [0.00827914, 1.04897, 1229.89]],
    101082703: [[1.04872, -0.0241258, 3567.14], [0.0241258, 1.04872, 1921.97]],
    101349486: [[1.63, 0.0, 2671.11], [0.0, 1.63, 2632.68]],
    101349651: [[1.63, 0.0, 1606.73], [0.0, 1.63, 1974.69]],
    102164388: [[0.644997, -0.0018825, 2139.25], [0.0018825, 0.644997, 2247.31]],
    102167343: [[0.644281, -0.0304545, 1995.84], [0.0304545, 0.644281, 1688.76]],
    71661905: [[1.04864, 0.0275006, 1043.48], [-0.0275006, 1.04864, 1443.26]],
    71662533: [[1.049, 0.00269609, 2135.23], [-0.00269609, 1.049, 1950.66]],
    75422860: [[1.04887, -0.0165169, 916.61], [0.0165169, 1.04887, 2349.57]],
    75422866: [[1.04572, -0.0828913, 792.248], [0.0828913, 1.04572, 1175.2]],
    79798700: [[1.04507, 0.0907617, -165.267], [-0.0907617, 1.04507, 2534.2]],
}
# tvr of real data sets (xy_to_pir files), by data set id.
TVR: dict[int, Rows] = {
    100055064: [
        [1.06512, 0.00954653, -0.0388257, -1716.6],
        [-0.0161521, 1.0205, -0.174613, -786.453],
        [0.033595, 0.176889, 1.03048, 247.604],
    ],
    1357: [
        [0.00587649, 0.0426766, -1.05404, 13091.5],
        [-0.0400542, 0.970878, 0.0400268, -1990.7],
        [1.07205, 0.0369913, 0.00748419, -1620.28],
    ],
    100142290: [
        [-0.0047633, -0.0105696, -1.05693, 13895.6],
        [-0.00176137, 1.16577, -0.0116513, -2220.41],
        [1.14781, -0.000322942, -0.00438351, -1590.98],
    ],
    100142355: [
        [0.00809779, -0.00809739, -0.809712, 12914.6],
        [-0.000229966, 1.21174, -0.0121201, -2447.9],
        [1.18735, 0.000107034, 0.0118734, -1928.81],
    ],
    71717640: [
        [0.00151872, 0.0110652, -1.02329, 13438.7],
        [0.0360432, 1.05453, 0.0107586, -1773.36],
        [1.04987, -0.0363614, 0.000574578, -952.858],
    ],
    75457580: [
        [1.06308, 0.0441715, -0.0598983, -1917.68],
        [-0.0436795, 1.05146, 0.00131925, -1817.69],
        [0.0551896, 0.00103567, 1.1593, 862.788],
    ],
    79913385: [
        [1.04079, 0.0772401, -0.0540981, -992.206],
        [-0.0742623, 1.07263, 0.00930624, -1612.4],
        [0.0546973, -0.00555456, 1.04755, 1174.19],
    ],
}
# tvs of real section images (pir_to_xy files), by image id.
TVS: dict[int, Rows] = {
    101082700: [[0.953041, 0.0217202, -100.804], [-0.0217202, 0.953041, -997.115]],
    101082701: [[0.951573, 0.0571759, -4172.79], [-0.0571759, 0.951573, -1793.74]],
    101349511: [[0.613497, 0.0, -1303.74], [0.0, 0.613497, -1618.7]],
    101349741: [[0.613497, 0.0, -2592.93], [0.0, 0.613497, -2417.94]],
    71661855: [[0.952644, -0.0350452, -1562.69], [0.0350452, 0.952644, -2218.55]],
    71661903: [[0.952918, -0.0265703, -948.348], [0.0265703, 0.952918, -1394.45]],
    75422842: [[0.95145, 0.0591769, -3407.3], [-0.0591769, 0.95145, -2074.52]],
    75422866: [[0.950308, 0.0753282, -841.406], [-0.0753282, 0.950308, -1057.13]],
}
# trv of real data sets (pir_to_xy files), by data set id.
TRV: dict[int, Rows] = {
    100055064: [
        [0.937606, -0.0144694, 0.0328746, 1589.98],
        [0.00933562, 0.951804, 0.161633, 724.554],
        [-0.0321697, -0.162912, 0.941604, -416.49],
    ],
    1357: [
        [0.00525716, -0.0357194, 0.931431, 1369.25],
        [0.0392637, 1.02682, 0.038149, 1591.87],
        [-0.947108, 0.041375, 0.0067375, 12492.3],
    ],
    71717640: [
        [0.000878992, 0.0327949, 0.951369, 952.864],
        [0.00993888, 0.94706, -0.0325279, 1514.92],
        [-0.977133, 0.0102896, 0.00106024, 13150.6],
    ],
    75457580: [
        [0.936527, -0.0393908, 0.0484331, 1682.57],
        [0.0389609, 0.949419, 0.000932608, 1799.66],
        [-0.0446192, 0.00102707, 0.860286, -825.943],
    ],
}


class ImageCase(NamedTuple):
    image_id: int
    data_set_id: int
    section_number: int
    thickness: float
    x: float
    y: float
    answer: tuple[float, float, float]


# Live image_to_reference answers (xy_to_pir files; thickness recorded there too).
IMAGE_CASES = [
    ImageCase(
        101082698,
        100055064,
        138,
        25.0,
        624,
        780,
        (-1192.185334541974, 696.7900580898736, 4186.105050438394),
    ),
    ImageCase(
        101349486,
        1357,
        23,
        25.0,
        363,
        122,
        (12625.441311536, 650.7064583599997, 1986.6504948520003),
    ),
    ImageCase(
        102164388,
        100142290,
        179,
        50.0,
        881,
        8,
        (4399.354737236239, 298.33732877892817, 1476.729149016926),
    ),
    ImageCase(
        102167343,
        100142355,
        164,
        50.0,
        123,
        156,
        (6277.2080118881995, -375.0944581088879, 626.9568405209434),
    ),
    ImageCase(
        75422866,
        75457580,
        100,
        25.0,
        530,
        464,
        (-601.6143953832222, -79.47331054366555, 3834.9921327513266),
    ),
    ImageCase(
        79798700,
        79913385,
        138,
        25.0,
        290,
        360,
        (-778.6446502024094, 1500.6232786780115, 4781.542229197628),
    ),
    ImageCase(
        71662533,
        71717640,
        381,
        25.0,
        868,
        974,
        (3729.3565485291347, 1570.991714081276, 2145.030933124496),
    ),
]


def alignment2d(image_id: int) -> Alignment2d:
    """The recorded matrices; a direction not recorded is the exact inverse of the other."""
    tsv = np.array(TSV[image_id]) if image_id in TSV else inverse(TVS[image_id])
    tvs = np.array(TVS[image_id]) if image_id in TVS else inverse(tsv)
    return Alignment2d(tsv, tvs)


def alignment3d(data_set_id: int) -> Alignment3d:
    """As alignment2d, for a data set."""
    tvr = np.array(TVR[data_set_id]) if data_set_id in TVR else inverse(TRV[data_set_id])
    trv = np.array(TRV[data_set_id]) if data_set_id in TRV else inverse(tvr)
    return Alignment3d(tvr, trv)


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda c: f"{c.image_id}_{c.x}_{c.y}")
def test_image_to_reference_gives_the_live_answer(case: ImageCase) -> None:
    point = image_to_reference(
        alignment2d(case.image_id),
        alignment3d(case.data_set_id),
        case.section_number,
        case.thickness,
        case.x,
        case.y,
    )
    # Required: 0.01 µm. The service computes in double precision with the same numbers, so
    # the agreement is far closer; 1e-6 keeps any change of formula from hiding.
    assert (float(point.x), float(point.y), float(point.z)) == pytest.approx(case.answer, abs=1e-6)


def test_the_depth_is_section_number_times_thickness_without_offset() -> None:
    """The same live answer rules out a 0-based section (one thickness off along the depth)."""
    case = IMAGE_CASES[0]
    shifted = image_to_reference(
        alignment2d(case.image_id),
        alignment3d(case.data_set_id),
        case.section_number - 1,
        case.thickness,
        case.x,
        case.y,
    )
    assert abs(float(shifted.z) - case.answer[2]) > 20


# The sections of each data set whose image ids and numbers the recorded files show (only these
# are known; the real data sets have more). Each live answer below must be the nearest of them.
SECTIONS: dict[int, dict[int, int]] = {
    100055064: {101082701: 2, 101082703: 18, 101082698: 138, 101082700: 154},
    1357: {101349486: 23, 101349511: 63, 101349651: 287, 101349741: 431},
    71717640: {71661855: 137, 71661903: 289, 71661905: 297, 71662533: 381},
    75457580: {75422842: 28, 75422860: 84, 75422866: 100},
}
THICKNESS = {100055064: 25.0, 1357: 25.0, 71717640: 25.0, 75457580: 25.0}


class ReferenceCase(NamedTuple):
    data_set_id: int
    point: tuple[float, float, float]
    image_id: int
    section_number: int
    x: float
    y: float


# Live reference_to_image answers (pir_to_xy files).
REFERENCE_CASES = [
    # past the data set's last recorded section: the service answers the last one
    ReferenceCase(100055064, (12500, 4800, 10800), 101082700, 154,
                  13011.82541148093, 5527.112435256138),
    # before the first: the first one
    ReferenceCase(100055064, (2200, 6650, 200), 101082701, 2,
                  -375.92772312676243, 4765.287423795473),
    ReferenceCase(1357, (11950, 6950, 2700), 101349511, 63,
                  965.3933367212037, 4087.1119865349556),
    ReferenceCase(1357, (2000, 5750, 800), 101349741, 431,
                  -1415.3086618727098, 2247.7854212051993),
    ReferenceCase(71717640, (10000, 5000, 10300), 71661855, 137,
                  8633.905789114644, 3894.054702317144),
    # depth 288.95 sections: 289 is nearer than the recorded 297
    ReferenceCase(71717640, (6100, 3100, 1650), 71661903, 289,
                  1439.0476849020715, 2923.302336187946),
    ReferenceCase(75457580, (1550, 2850, 1800), 75422842, 28,
                  -178.8495180037503, 2087.3095505683455),
    ReferenceCase(75457580, (900, 4650, 3850), 75422866, 100,
                  2032.7159420372227, 4694.768202205023),
]  # fmt: skip


def series(data_set_id: int) -> SectionSeries:
    sections = tuple(
        Section(image_id, number, alignment2d(image_id))
        for image_id, number in SECTIONS[data_set_id].items()
    )
    return SectionSeries(data_set_id, THICKNESS[data_set_id], alignment3d(data_set_id), sections)


@pytest.mark.parametrize(
    "case", REFERENCE_CASES, ids=lambda c: "_".join(map(str, (c.data_set_id, *c.point)))
)
def test_reference_to_image_gives_the_live_answer(case: ReferenceCase) -> None:
    hit = reference_to_image(series(case.data_set_id), *case.point)
    assert hit.section_data_set_id == case.data_set_id
    assert (int(hit.section_image_id), int(hit.section_number)) == (
        case.image_id,
        case.section_number,
    )
    assert (float(hit.x), float(hit.y)) == pytest.approx((case.x, case.y), abs=1e-6)


def test_reference_to_image_is_vectorised_over_points_on_different_sections() -> None:
    cases = [c for c in REFERENCE_CASES if c.data_set_id == 71717640]
    points = np.array([c.point for c in cases], dtype=np.float64)
    hit = reference_to_image(series(71717640), points[:, 0], points[:, 1], points[:, 2])
    assert hit.section_image_id.tolist() == [c.image_id for c in cases]
    assert hit.x == pytest.approx([c.x for c in cases], abs=1e-6)
    assert hit.y == pytest.approx([c.y for c in cases], abs=1e-6)


def random_series(rng: np.random.Generator, count: int, thickness: float) -> SectionSeries:
    """A data set with exact inverse pairs: rotation, scale, shear and shift of realistic size."""
    tvr = np.hstack([np.eye(3) + rng.normal(0, 0.05, (3, 3)), rng.uniform(-2000, 2000, (3, 1))])
    sections = []
    for number in sorted(rng.choice(np.arange(1, 500), count, replace=False).tolist()):
        angle = rng.uniform(-0.2, 0.2)
        scale = rng.uniform(0.35, 1.7)
        linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        tsv = np.hstack([linear, rng.uniform(-5000, 5000, (2, 1))])
        sections.append(Section(10_000 + number, number, Alignment2d(tsv, inverse(tsv))))
    return SectionSeries(1, thickness, Alignment3d(tvr, inverse(tvr)), tuple(sections))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_image_to_reference_and_back_returns_the_pixel(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data_set = random_series(rng, 40, 100.0)
    for section in data_set.sections[::7]:
        x = rng.uniform(0, 30000, 1000)
        y = rng.uniform(0, 20000, 1000)
        point = image_to_reference(
            section.alignment, data_set.alignment, section.section_number, 100.0, x, y
        )
        hit = reference_to_image(data_set, point.x, point.y, point.z)
        assert (hit.section_image_id == section.image_id).all()
        assert np.abs(hit.x - x).max() < 0.01
        assert np.abs(hit.y - y).max() < 0.01


def test_real_records_round_trip_to_their_own_precision() -> None:
    """Image 75422866's recorded tsv/tvs and its data set's tvr/trv (six significant digits,
    not exact inverses) bring pixel (530, 464) back within 0.02 px."""
    data_set = series(75457580)
    section = Alignment2d(np.array(TSV[75422866]), np.array(TVS[75422866]))
    point = image_to_reference(section, data_set.alignment, 100, 25.0, 530, 464)
    real = SectionSeries(75457580, 25.0, data_set.alignment, (Section(75422866, 100, section),))
    hit = reference_to_image(real, point.x, point.y, point.z)
    assert (float(hit.x), float(hit.y)) == pytest.approx((530, 464), abs=0.02)


def test_image_to_reference_agrees_with_the_plain_matrix_product() -> None:
    """The folded 3x3 matrix against the formula as written: tvr · [tsv · [x y 1], n·t, 1]."""
    rng = np.random.default_rng(7)
    case = IMAGE_CASES[2]
    two, three = alignment2d(case.image_id), alignment3d(case.data_set_id)
    x, y = rng.uniform(0, 20000, (2, 50))
    point = image_to_reference(two, three, case.section_number, case.thickness, x, y)
    for i in range(50):
        u, v = two.tsv @ [x[i], y[i], 1.0]
        expected = three.tvr @ [u, v, case.section_number * case.thickness, 1.0]
        got = (point.x[i], point.y[i], point.z[i])
        assert got == pytest.approx(tuple(expected), abs=1e-7)


def test_shapes_follow_the_input() -> None:
    case = IMAGE_CASES[0]
    two, three = alignment2d(case.image_id), alignment3d(case.data_set_id)
    scalar = image_to_reference(two, three, 1, 25.0, 3, 4)
    assert scalar.x.shape == ()
    grid = image_to_reference(two, three, 1, 25.0, np.zeros((4, 5)), 7.0)
    assert grid.z.shape == (4, 5)
    with pytest.raises(UsageError):
        image_to_reference(two, three, 1, 25.0, np.zeros(3), np.zeros(4))
    with pytest.raises(UsageError):
        image_to_reference(two, three, 1, 25.0, "a", 1)


@pytest.mark.parametrize(
    ("depth", "index"),
    [
        (-1e9, 0),  # before the first section: the first
        (100.0, 0),  # exactly on one
        (149.9, 0),
        (150.0, 0),  # a tie between 100 and 200: the lower
        (150.1, 1),
        (200.0, 1),
        (449.0, 2),  # 49 from 400, 51 from 500
        (451.0, 3),
        (1e9, 3),  # past the last: the last
    ],
)
def test_nearest_section(depth: float, index: int) -> None:
    depths = np.array([100.0, 200.0, 400.0, 500.0])
    assert int(nearest_section(depths, np.asarray(depth))) == index


def test_nearest_section_edge_cases() -> None:
    assert nearest_section(np.array([300.0]), np.array([-5.0, 9e9])).tolist() == [0, 0]
    with pytest.raises(NoAlignmentError):
        nearest_section(np.array([]), np.array([1.0]))
    with pytest.raises(UsageError):
        nearest_section(np.array([1.0, 2.0]), np.array([np.nan]))


def test_duplicate_section_numbers_choose_the_lower_image_id() -> None:
    two = alignment2d(75422866)
    data_set = SectionSeries(
        5, 25.0, alignment3d(75457580), (Section(9, 100, two), Section(3, 100, two))
    )
    assert int(reference_to_image(data_set, 900, 4650, 3850).section_image_id) == 3


def records(data_set_id: int) -> tuple[dict[str, object], list[dict[str, object]]]:
    """API-shaped records, fields spelled out from the matrices by the documented layout."""

    def fields(prefix: str, matrix: np.ndarray, names: list[list[str]]) -> dict[str, object]:
        return {
            f"{prefix}_{names[r][c]}": float(matrix[r, c])
            for r in range(matrix.shape[0])
            for c in range(matrix.shape[1])
        }

    two_d = [["00", "01", "04"], ["02", "03", "05"]]
    three_d = [["00", "01", "02", "09"], ["03", "04", "05", "10"], ["06", "07", "08", "11"]]
    three = alignment3d(data_set_id)
    data_set = {
        "id": data_set_id,
        "section_thickness": THICKNESS[data_set_id],
        "alignment3d": {**fields("tvr", three.tvr, three_d), **fields("trv", three.trv, three_d)},
    }
    images: list[dict[str, object]] = []
    for image_id, number in SECTIONS[data_set_id].items():
        two = alignment2d(image_id)
        images.append(
            {
                "id": image_id,
                "section_number": number,
                "alignment2d": {**fields("tsv", two.tsv, two_d), **fields("tvs", two.tvs, two_d)},
            }
        )
    return data_set, images


def test_series_from_records_skips_unaligned_images_and_refuses_an_unaligned_data_set() -> None:
    data_set, images = records(71717640)
    images.append({"id": 1, "section_number": 290, "alignment2d": None})
    built = series_from_records(data_set, images)
    assert sorted(s.image_id for s in built.sections) == sorted(SECTIONS[71717640])
    case = REFERENCE_CASES[5]
    hit = reference_to_image(built, *case.point)
    assert int(hit.section_image_id) == case.image_id
    assert (float(hit.x), float(hit.y)) == pytest.approx((case.x, case.y), abs=1e-6)

    with pytest.raises(NoAlignmentError, match="data set 71717640 has no alignment"):
        series_from_records({**data_set, "alignment3d": None}, images)
    with pytest.raises(NoAlignmentError, match="section_thickness"):
        series_from_records({**data_set, "section_thickness": None}, images)
    with pytest.raises(NoAlignmentError, match="no aligned section images"):
        reference_to_image(series_from_records(data_set, images[-1:]), 0, 0, 0)


@pytest.mark.parametrize(
    ("tier", "downsample", "full"),
    [(0, 0, 0), (100, 0, 100), (100, 4, 1600), (12.5, 3, 100), (1, 10, 1024)],
)
def test_downsample_tiers(tier: float, downsample: int, full: float) -> None:
    assert float(full_resolution(tier, downsample)) == full
    assert float(tier_pixel(full, downsample)) == tier


@pytest.mark.parametrize("downsample", [-1, 1.5, True])
def test_downsample_must_be_a_tier(downsample: object) -> None:
    with pytest.raises(UsageError, match="downsample"):
        full_resolution(1, downsample)  # type: ignore[arg-type]
