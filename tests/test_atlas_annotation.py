"""Annotation NRRDs written here in the CCF 2017 form; the structure at a point, voxel by voxel."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from crawler.atlas.annotation import read_volume, structure_at, value_at
from crawler.errors import ContentError, UsageError

SIZES = (4, 3, 2)  # anterior-posterior, dorsal-ventral, left-right, as the file lists them


def value(i: int, j: int, k: int) -> int:
    """Every voxel tells its own index; the big offset keeps uint32 ids above 2**31 honest."""
    return 3_000_000_000 + 100 * i + 10 * j + k


def write_nrrd(
    path: Path,
    *,
    sizes: tuple[int, ...] = SIZES,
    directions: str = "(25,0,0) (0,25,0) (0,0,25)",
    dimension: int = 3,
) -> None:
    """A gzip NRRD with the header fields of annotation_25.nrrd; data in file order (first axis
    fastest), written by hand so the reader is tested against the format, not against itself."""
    data = np.zeros(sizes, dtype="<u4")
    for index in np.ndindex(*sizes):
        data[index] = value(*index) if len(index) == 3 else 1
    header = (
        "NRRD0004\n"
        "# Complete NRRD file format specification at:\n"
        "# http://teem.sourceforge.net/nrrd/format.html\n"
        "type: unsigned int\n"
        f"dimension: {dimension}\n"
        "space: left-posterior-superior\n"
        f"sizes: {' '.join(map(str, sizes))}\n"
        f"space directions: {directions}\n"
        f"kinds: {' '.join(['domain'] * dimension)}\n"
        "endian: little\n"
        "encoding: gzip\n"
        "space origin: (0,0,0)\n"
        "\n"
    )
    path.write_bytes(header.encode() + gzip.compress(data.tobytes(order="F")))


def test_read_keeps_the_file_axis_order_and_voxel_size(tmp_path: Path) -> None:
    write_nrrd(tmp_path / "annotation_25.nrrd")
    volume = read_volume(tmp_path / "annotation_25.nrrd")
    assert volume.data.shape == SIZES
    assert volume.resolution_um == 25.0
    assert int(volume.data[3, 1, 0]) == value(3, 1, 0)


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ((0, 0, 0), value(0, 0, 0)),
        ((24.999, 49.9, 0.1), value(0, 1, 0)),
        ((25, 50, 25), value(1, 2, 1)),  # floor: a voxel's lower faces belong to it
        ((99.99, 74.99, 49.99), value(3, 2, 1)),
        ((100, 0, 0), 0),  # just past the far face of the first axis
        ((0, 75, 0), 0),
        ((0, 0, 50), 0),
        ((-0.001, 0, 0), 0),  # floor(-0.00004) is -1: outside, not voxel 0
        ((float("nan"), 0, 0), 0),
        ((1e30, 0, 0), 0),
    ],
)
def test_structure_at(tmp_path: Path, point: tuple[float, float, float], expected: int) -> None:
    write_nrrd(tmp_path / "a.nrrd")
    volume = read_volume(tmp_path / "a.nrrd")
    assert int(structure_at(volume.data, volume.resolution_um, *point)) == expected
    assert value_at(tmp_path / "a.nrrd", *point) == expected  # streamed to the one voxel


def write_form(path: Path, encoding: str, endian: str, nrrd_type: str, dtype: str) -> np.ndarray:
    """The SIZES volume in another encoding, byte order or voxel type."""
    data = np.zeros(SIZES, dtype=dtype)
    for index in np.ndindex(*SIZES):
        data[index] = value(*index) % np.iinfo(dtype).max if dtype != "<f4" else 0.5
    raw = data.astype(("<" if endian == "little" else ">") + dtype[1:]).tobytes(order="F")
    header = (
        f"NRRD0004\ntype: {nrrd_type}\ndimension: 3\nsizes: 4 3 2\n"
        f"space directions: (25,0,0) (0,25,0) (0,0,25)\nendian: {endian}\nencoding: {encoding}\n\n"
    )
    path.write_bytes(header.encode() + (gzip.compress(raw) if encoding == "gzip" else raw))
    return data


@pytest.mark.parametrize(
    ("encoding", "endian", "nrrd_type", "dtype"),
    [
        ("raw", "little", "unsigned int", "<u4"),
        ("gzip", "big", "uint32", "<u4"),
        ("raw", "big", "unsigned short", "<u2"),
        ("gzip", "little", "short", "<i2"),
        ("gzip", "little", "float", "<f4"),  # not streamable: read whole, same answer
    ],
)
def test_value_at_reads_every_form(
    tmp_path: Path, encoding: str, endian: str, nrrd_type: str, dtype: str
) -> None:
    path = tmp_path / "v.nrrd"
    data = write_form(path, encoding, endian, nrrd_type, dtype)
    for index in np.ndindex(*SIZES):
        point = [25.0 * n + 12.5 for n in index]
        assert value_at(path, *point) == int(data[index])
    assert value_at(path, 100.0, 0.0, 0.0) == 0


def test_value_at_refuses_a_cut_or_foreign_file(tmp_path: Path) -> None:
    write_nrrd(tmp_path / "a.nrrd")
    body = (tmp_path / "a.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(body[:-30])
    with pytest.raises(ContentError):
        value_at(tmp_path / "cut.nrrd", 99.0, 74.0, 49.0)
    (tmp_path / "x.nrrd").write_text("<html>site unavailable</html>")
    with pytest.raises(ContentError):
        value_at(tmp_path / "x.nrrd", 1.0, 1.0, 1.0)


def test_structure_at_is_vectorised(tmp_path: Path) -> None:
    write_nrrd(tmp_path / "a.nrrd")
    volume = read_volume(tmp_path / "a.nrrd")
    x = np.array([[0.0, 30.0], [60.0, 500.0]])
    got = structure_at(volume.data, 25.0, x, 30.0, np.array([0.0, 30.0]))
    assert got.dtype == np.int64
    assert got.tolist() == [[value(0, 1, 0), value(1, 1, 1)], [value(2, 1, 0), 0]]
    assert structure_at(volume.data, 25.0, 1.0, 2.0, 3.0).shape == ()


def test_structure_at_refuses_nonsense() -> None:
    volume = np.ones((2, 2, 2), dtype=np.uint32)
    with pytest.raises(UsageError):
        structure_at(volume, 0.0, 1, 1, 1)
    with pytest.raises(UsageError):
        structure_at(volume, 25.0, np.zeros(2), np.zeros(3), 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"directions": "(25,0,0) (0,10,0) (0,0,25)"},  # not cubes
        {"directions": "(0,25,0) (25,0,0) (0,0,25)"},  # axes swapped: not axis-aligned as stored
        {"sizes": (4, 3), "directions": "(25,0) (0,25)", "dimension": 2},
    ],
)
def test_unusable_volumes_are_refused(tmp_path: Path, kwargs: dict[str, object]) -> None:
    write_nrrd(tmp_path / "bad.nrrd", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ContentError):
        read_volume(tmp_path / "bad.nrrd")


def test_an_outage_page_is_not_a_volume(tmp_path: Path) -> None:
    (tmp_path / "x.nrrd").write_text("<html>site unavailable</html>")
    with pytest.raises(ContentError):
        read_volume(tmp_path / "x.nrrd")
    with pytest.raises(ContentError):
        read_volume(tmp_path / "absent.nrrd")
