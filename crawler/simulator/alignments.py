"""Alignment2d and Alignment3d records: realistic, mutually inverse, and pure functions of records.

The layouts are the ones public code reading the live service uses (ALLEN_API.md §6):

    tsv (image pixels -> section volume, µm), 2x3:
        [[tsv_00, tsv_01, tsv_04],
         [tsv_02, tsv_03, tsv_05]]
    tvr (section volume -> reference space, µm), 3x4:
        [[tvr_00, tvr_01, tvr_02, tvr_09],
         [tvr_03, tvr_04, tvr_05, tvr_10],
         [tvr_06, tvr_07, tvr_08, tvr_11]]

`tvs` and `trv` are the inverses in the same layouts. A pixel (x, y) of section n lands at
reference = tvr · [tsv · [x, y, 1], n × section_thickness, 1], in the service's (p, i, r) axes
(posterior, inferior, right). Magnitudes follow recorded live records: tsv scales by the image's
µm per pixel with a small rotation and a translation of a few thousand µm; tvr scales by about
1.05-1.15, sends the section depth to p (coronal) or r (sagittal), and moves by 1-14 mm. Values
carry 6 significant digits, as the live ones do. Every draw is seeded by the record's id.
"""

from __future__ import annotations

import math
import random

from crawler.simulator.schema import Record

Affine2 = tuple[tuple[float, float, float], tuple[float, float, float]]
Row3 = tuple[float, float, float, float]
Affine3 = tuple[Row3, Row3, Row3]

CORONAL, SAGITTAL = 1, 2
# Reference-space extents in µm (the 25 µm CCF volume is 528 x 320 x 456 voxels: p, i, r).
REFERENCE_UM = (13200.0, 8000.0, 11400.0)
# Where the middle of a section series lands: coronal series cross the midline, sagittal series
# (one hemisphere, as the ISH atlas cuts) sit halfway between midline and edge.
_TARGET = {CORONAL: (6600.0, 4000.0, 5700.0), SAGITTAL: (6600.0, 4000.0, 2850.0)}
# Width of a section in its own volume: coronal sections span left-right, sagittal front-back.
_SECTION_WIDTH = {CORONAL: REFERENCE_UM[2], SAGITTAL: REFERENCE_UM[0]}

_TSV_ORDER = ((0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (1, 2))
_TVR_ORDER = (*((r, c) for r in range(3) for c in range(3)), (0, 3), (1, 3), (2, 3))


def significant(value: float, digits: int = 6) -> float:
    """Round to `digits` significant digits, as the live service prints its matrices."""
    return float(f"{value:.{digits}g}")


def _plane(value: object) -> int:
    return SAGITTAL if value == SAGITTAL else CORONAL


def tsv_matrix(image: Record, *, pixel_um: float, plane: object) -> Affine2:
    """Image pixels to section volume: µm per pixel, a small rotation, the section centred."""
    rng = random.Random(f"alignment2d:{image['id']}")
    angle = math.radians(rng.uniform(-3.0, 3.0))
    scale = pixel_um * rng.uniform(0.98, 1.02)
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    x, y, width, height = (float(image[k] or 0) for k in ("x", "y", "width", "height"))
    centre_x, centre_y = x + width / 2, y + height / 2
    target_x = _SECTION_WIDTH[_plane(plane)] / 2 + rng.uniform(-150.0, 150.0)
    target_y = REFERENCE_UM[1] / 2 + rng.uniform(-150.0, 150.0)
    return (
        (a, b, target_x - (a * centre_x + b * centre_y)),
        (-b, a, target_y - (-b * centre_x + a * centre_y)),
    )


def tvr_matrix(data_set: Record, *, sections: int) -> Affine3:
    """Section volume to reference: the section depth becomes p (coronal) or r (sagittal)."""
    rng = random.Random(f"alignment3d:{data_set['id']}")
    plane = _plane(data_set["plane_of_section_id"])
    kx, ky, kz = (rng.uniform(1.03, 1.16) for _ in range(3))
    if plane == CORONAL:  # x -> r, y -> i, depth -> -p (section 1 is the front of the brain)
        base = ((0.0, 0.0, -kz), (0.0, ky, 0.0), (kx, 0.0, 0.0))
    else:  # x -> p, y -> i, depth -> r
        base = ((kx, 0.0, 0.0), (0.0, ky, 0.0), (0.0, 0.0, kz))
    tilt = _rotation(*(math.radians(rng.uniform(-1.5, 1.5)) for _ in range(3)))
    linear = _multiply(tilt, base)
    thickness = float(data_set["section_thickness"] or 25.0)
    middle = (_SECTION_WIDTH[plane] / 2, REFERENCE_UM[1] / 2, (sections + 1) / 2 * thickness)
    target = _TARGET[plane]
    rows: list[Row3] = []
    for row, goal in zip(linear, target, strict=True):
        moved = sum(m * v for m, v in zip(row, middle, strict=True))
        rows.append((row[0], row[1], row[2], goal + rng.uniform(-200.0, 200.0) - moved))
    return (rows[0], rows[1], rows[2])


def invert2(matrix: Affine2) -> Affine2:
    """The inverse 2-D affine map."""
    (a, b, tx), (c, d, ty) = matrix
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return ((ia, ib, -(ia * tx + ib * ty)), (ic, id_, -(ic * tx + id_ * ty)))


def invert3(matrix: Affine3) -> Affine3:
    """The inverse 3-D affine map (3x3 inverse by cofactors, then the moved translation)."""
    m = [row[:3] for row in matrix]
    t = [row[3] for row in matrix]
    cof = [
        [
            m[(i + 1) % 3][(j + 1) % 3] * m[(i + 2) % 3][(j + 2) % 3]
            - m[(i + 1) % 3][(j + 2) % 3] * m[(i + 2) % 3][(j + 1) % 3]
            for j in range(3)
        ]
        for i in range(3)
    ]
    det = sum(m[0][j] * cof[0][j] for j in range(3))
    inverse = [[cof[j][i] / det for j in range(3)] for i in range(3)]
    rows = [(*row, -sum(row[k] * t[k] for k in range(3))) for row in inverse]
    return (rows[0], rows[1], rows[2])  # type: ignore[return-value]


def apply2(matrix: Affine2, x: float, y: float) -> tuple[float, float]:
    """Map one point with a 2x3 affine matrix."""
    (a, b, tx), (c, d, ty) = matrix
    return a * x + b * y + tx, c * x + d * y + ty


def apply3(matrix: Affine3, x: float, y: float, z: float) -> tuple[float, float, float]:
    """Map one point with a 3x4 affine matrix."""
    p, i, r = (row[0] * x + row[1] * y + row[2] * z + row[3] for row in matrix)
    return p, i, r


def read2(record: Record, prefix: str) -> Affine2:
    """`tsv` or `tvs` of an Alignment2d record as a 2x3 matrix."""
    cells = {pos: float(record[f"{prefix}_{n:02d}"] or 0) for n, pos in enumerate(_TSV_ORDER)}
    return tuple(tuple(cells[(r, c)] for c in range(3)) for r in range(2))  # type: ignore[return-value]


def read3(record: Record, prefix: str) -> Affine3:
    """`tvr` or `trv` of an Alignment3d record as a 3x4 matrix."""
    cells = {pos: float(record[f"{prefix}_{n:02d}"] or 0) for n, pos in enumerate(_TVR_ORDER)}
    return tuple(tuple(cells[(r, c)] for c in range(4)) for r in range(3))  # type: ignore[return-value]


def alignment2d(alignment_id: int, image: Record, *, pixel_um: float, plane: object) -> Record:
    """The Alignment2d of one SectionImage or AtlasImage (`pixel_um`: µm per stored pixel)."""
    tsv = tsv_matrix(image, pixel_um=pixel_um, plane=plane)
    record: Record = {"id": alignment_id, "section_image_id": image["id"]}
    for prefix, matrix in (("tsv", tsv), ("tvs", invert2(tsv))):
        for n, (r, c) in enumerate(_TSV_ORDER):
            record[f"{prefix}_{n:02d}"] = significant(matrix[r][c])
    return record


def alignment3d(alignment_id: int, data_set: Record, *, sections: int) -> Record:
    """The Alignment3d of one SectionDataSet holding `sections` sections."""
    tvr = tvr_matrix(data_set, sections=sections)
    record: Record = {
        "id": alignment_id,
        "aligned_type": "DataSet",
        "aligned_id": data_set["id"],
    }
    for prefix, matrix in (("tvr", tvr), ("trv", invert3(tvr))):
        for n, (r, c) in enumerate(_TVR_ORDER):
            record[f"{prefix}_{n:02d}"] = significant(matrix[r][c])
    return record


def _rotation(ax: float, ay: float, az: float) -> tuple[tuple[float, float, float], ...]:
    cx, sx, cy, sy, cz, sz = (f(a) for a in (ax, ay, az) for f in (math.cos, math.sin))
    rx = ((1.0, 0.0, 0.0), (0.0, cx, -sx), (0.0, sx, cx))
    ry = ((cy, 0.0, sy), (0.0, 1.0, 0.0), (-sy, 0.0, cy))
    rz = ((cz, -sz, 0.0), (sz, cz, 0.0), (0.0, 0.0, 1.0))
    return _multiply(rz, _multiply(ry, rx))


def _multiply(
    left: tuple[tuple[float, float, float], ...], right: tuple[tuple[float, float, float], ...]
) -> tuple[tuple[float, float, float], ...]:
    return tuple(
        tuple(sum(left[i][k] * right[k][j] for k in range(3)) for j in range(3))  # type: ignore[misc]
        for i in range(3)
    )
