"""CCF annotation volumes: which structure holds a point given in reference-space µm.

The CCF 2017 NRRDs (``annotation_{10,25,50,100}.nrrd``) store axes in the order anterior ->
posterior, superior -> inferior, left -> right, which are the axes of the image
synchronization service's x, y, z: voxel ``floor(x / R), floor(y / R), floor(z / R)`` holds
the point, for a volume at R µm. We read the axes as the file stores them (pynrrd's default
Fortran order puts the first ``sizes`` entry first) and never reorder them.
"""

from __future__ import annotations

import math
import zlib
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
    volume (4.8 GB decompressed at 10 µm) is never held. 0 outside the volume.

    Only an attached, raw or gzip NRRD of integers, as the CCF volumes are; for anything else
    the volume is read whole (``read_volume``) and looked up with ``structure_at``.
    """
    try:
        with path.open("rb") as handle:
            start = handle.read(HEADER_LIMIT)
            end = start.find(b"\n\n")
            header = nrrd.read_header(start[:end].decode("ascii").split("\n")) if end > 0 else {}
            form = _streamable(header)
            if form is None:
                volume = read_volume(path)
                return int(structure_at(volume.data, volume.resolution_um, x, y, z))
            dtype, encoding = form
            sizes = [int(n) for n in header["sizes"]]
            step = _resolution(header, path)
            if not all(math.isfinite(c) for c in (x, y, z)):
                return 0  # as structure_at says: nowhere in the volume
            index = [math.floor(c / step) for c in (x, y, z)]
            if not all(0 <= i < n for i, n in zip(index, sizes, strict=True)):
                return 0
            linear = index[0] + sizes[0] * (index[1] + sizes[1] * index[2])  # first axis fastest
            handle.seek(end + 2)
            raw = _bytes_at(handle, linear * dtype.itemsize, dtype.itemsize, encoding)
    except (OSError, ValueError, UnicodeDecodeError, KeyError, nrrd.NRRDError, zlib.error) as exc:
        raise ContentError(f"cannot read the NRRD volume {path}: {exc}") from exc
    return int(np.frombuffer(raw, dtype=dtype)[0])


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


def _bytes_at(handle: BinaryIO, offset: int, count: int, encoding: str) -> bytes:
    """``count`` data bytes from ``offset`` of the data that starts at the handle's position."""
    if encoding == "raw":
        handle.seek(offset, 1)
        found = handle.read(count)
    else:
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        seen, kept = 0, b""
        while len(kept) < count:
            pending = inflate.unconsumed_tail or handle.read(CHUNK)
            if not pending:
                break
            out = inflate.decompress(pending, INFLATE_LIMIT)
            if seen + len(out) > offset:
                kept += out[max(0, offset - seen) :]
            seen += len(out)
        found = kept[:count]
    if len(found) != count:
        raise ValueError("the data ends before the voxel (a cut file?)")
    return found


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
