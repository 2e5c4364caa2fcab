"""CCF annotation volumes: which structure holds a point given in reference-space µm.

The CCF 2017 NRRDs (``annotation_{10,25,50,100}.nrrd``) store axes in the order anterior ->
posterior, superior -> inferior, left -> right, which are the axes of the image
synchronization service's x, y, z: voxel ``floor(x / R), floor(y / R), floor(z / R)`` holds
the point, for a volume at R µm. We read the axes as the file stores them (pynrrd's default
Fortran order puts the first ``sizes`` entry first) and never reorder them.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import nrrd
import numpy as np
from numpy.typing import ArrayLike, NDArray

from crawler.errors import ContentError, UsageError


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxels in the file's axis order, and the edge of one cubic voxel in µm."""

    data: NDArray[np.generic]
    resolution_um: float


def read_volume(path: Path) -> Volume:
    """Read a 3-D NRRD whose voxels are axis-aligned cubes (as every CCF volume is)."""
    try:
        data, header = nrrd.read(str(path))
    except (OSError, ValueError, nrrd.NRRDError) as exc:
        raise ContentError(f"cannot read the NRRD volume {path}: {exc}") from exc
    if header.get("dimension") != 3 or data.ndim != 3:
        raise ContentError(f"{path} is not a 3-D volume (dimension {header.get('dimension')})")
    return Volume(data, _resolution(header, path))


def structure_at(
    volume: NDArray[np.generic], resolution_um: float, x: ArrayLike, y: ArrayLike, z: ArrayLike
) -> NDArray[np.int64]:
    """The annotation value (structure id) at reference points in µm; 0 outside the volume.

    Vectorised: the coordinates broadcast together, and the answer has their shape.
    """
    if not resolution_um > 0:
        raise UsageError(f"resolution must be positive, not {resolution_um!r}")
    try:
        coords = np.broadcast_arrays(*(np.asarray(c, dtype=np.float64) for c in (x, y, z)))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"coordinates must be numbers of one shape: {exc}") from exc
    # Floor in floating point and bound-check there: NaN and far-away points never reach an
    # integer cast, so they cannot wrap around into the volume.
    voxels = [np.floor(c / float(resolution_um)) for c in coords]
    inside = np.ones(coords[0].shape, dtype=bool)
    for axis, index in enumerate(voxels):
        inside &= (index >= 0) & (index < volume.shape[axis])
    result = np.zeros(coords[0].shape, dtype=np.int64)
    picked = tuple(index[inside].astype(np.intp) for index in voxels)
    result[inside] = volume[picked]
    return result


# Voxel types a CCF volume uses, as NRRD spells them; others are read whole by read_volume.
_TYPES = {
    **dict.fromkeys(("unsigned int", "uint", "uint32", "uint32_t"), "u4"),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t"), "i4"),
    **dict.fromkeys(("unsigned short", "ushort", "uint16", "uint16_t"), "u2"),
    **dict.fromkeys(("short", "signed short", "int16", "int16_t"), "i2"),
}
_ENDIAN = {"little": "<", "big": ">"}
HEADER_LIMIT = 1 << 16  # a NRRD header is a few hundred bytes
CHUNK = 1 << 20  # compressed bytes read at a time
INFLATE_LIMIT = 1 << 24  # decompressed bytes held at a time (zero runs inflate ~1000x)


def value_at(path: Path, x: float, y: float, z: float) -> int:
    """The voxel holding one point (µm), read by streaming the file up to it: the whole
    volume (4.8 GB decompressed at 10 µm) is never held. 0 outside the volume."""
    return values_at(path, [(x, y, z)])[0]


def values_at(path: Path, points: Sequence[tuple[float, float, float]]) -> list[int]:
    """The annotation value at each point (µm; 0 outside the volume), in one pass over the file:
    the offsets sorted, the data inflated once, nothing kept but the voxels asked for.

    Only an attached, raw or gzip NRRD of integers, as the CCF volumes are; for anything else
    the volume is read whole (``read_volume``) and looked up with ``structure_at``.
    """
    if not points:
        return []
    coords = np.asarray(points, dtype=np.float64)
    try:
        with path.open("rb") as handle:
            start = handle.read(HEADER_LIMIT)
            end = start.find(b"\n\n")
            header = nrrd.read_header(start[:end].decode("ascii").split("\n")) if end > 0 else {}
            form = _streamable(header)
            if form is None:
                volume = read_volume(path)
                found = structure_at(
                    volume.data, volume.resolution_um, coords[:, 0], coords[:, 1], coords[:, 2]
                )
                return [int(v) for v in found]
            dtype, encoding = form
            sizes = [int(n) for n in header["sizes"]]
            voxels = np.floor(coords / _resolution(header, path))
            inside = np.all((voxels >= 0) & (voxels < np.asarray(sizes)), axis=1)
            index = voxels[inside].astype(np.int64)
            linear = index[:, 0] + sizes[0] * (index[:, 1] + sizes[1] * index[:, 2])
            handle.seek(end + 2)
            raw = _read_offsets(handle, linear * dtype.itemsize, dtype.itemsize, encoding)
    except (OSError, ValueError, UnicodeDecodeError, KeyError, nrrd.NRRDError, zlib.error) as exc:
        raise ContentError(f"cannot read the NRRD volume {path}: {exc}") from exc
    result = np.zeros(len(points), dtype=np.int64)
    result[inside] = np.frombuffer(raw, dtype=dtype)
    return [int(v) for v in result]


def _streamable(header: dict[str, object]) -> tuple[np.dtype[np.integer], str] | None:
    """The voxel type and encoding of a 3-D volume this module can stream, or None."""
    kind, endian, encoding = (
        header.get("type"),
        header.get("endian", "little"),
        header.get("encoding"),
    )
    if (
        header.get("dimension") != 3
        or kind not in _TYPES
        or endian not in _ENDIAN
        or encoding not in ("raw", "gzip", "gz")
        or any(key in header for key in ("data file", "datafile", "line skip", "byte skip"))
    ):
        return None
    return np.dtype(_ENDIAN[str(endian)] + _TYPES[str(kind)]), str(encoding)


def _read_offsets(handle: BinaryIO, offsets: NDArray[np.int64], size: int, encoding: str) -> bytes:
    """``size`` bytes at each offset of the data starting at the handle's position, in the
    offsets' order, reading (and inflating) the data once, front to back."""
    order = np.argsort(offsets, kind="stable")
    picked: list[bytes] = [b""] * len(offsets)
    if encoding == "raw":
        base = handle.tell()
        for i in order:
            handle.seek(base + int(offsets[i]))
            picked[i] = handle.read(size)
    else:
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        seen, window, position = 0, b"", 0  # window starts at data offset ``seen``
        while position < len(order):
            pending = inflate.unconsumed_tail or handle.read(CHUNK)
            if not pending:
                break
            window += inflate.decompress(pending, INFLATE_LIMIT)
            while position < len(order):
                offset = int(offsets[order[position]]) - seen
                if offset + size > len(window):
                    break
                picked[order[position]] = window[offset : offset + size]
                position += 1
            keep = len(window)  # drop what no voxel still to pick needs
            if position < len(order):
                keep = min(keep, int(offsets[order[position]]) - seen)
            seen += keep
            window = window[keep:]
    if any(len(chunk) != size for chunk in picked):
        raise ValueError("the data ends before a voxel (a cut file?)")
    return b"".join(picked)


def _resolution(header: dict[str, object], path: Path) -> float:
    """The voxel edge from ``space directions`` (or ``spacings``); only isotropic, axis-aligned."""
    directions = header.get("space directions")
    if directions is not None:
        matrix = np.asarray(directions, dtype=np.float64)
        if matrix.shape != (3, 3) or np.count_nonzero(matrix - np.diag(np.diag(matrix))):
            raise ContentError(f"{path}: space directions are not axis-aligned: {directions!r}")
        steps = np.abs(np.diag(matrix))
    elif header.get("spacings") is not None:
        steps = np.abs(np.asarray(header["spacings"], dtype=np.float64))
    else:
        raise ContentError(f"{path} says nothing of its voxel size (no space directions)")
    if steps.shape != (3,) or not np.all(steps > 0) or not np.allclose(steps, steps[0]):
        raise ContentError(f"{path}: voxels are not cubes: {steps.tolist()}")
    return float(steps[0])
