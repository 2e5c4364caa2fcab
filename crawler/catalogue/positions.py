"""Where each section sits in the CCF: its centre's reference point and the structure there.

The centre is the middle of the image's box (``x + width/2, y + height/2`` in full-resolution
pixels of the whole image), mapped with the image's Alignment2d and the data set's Alignment3d
exactly as ``locate`` maps a pixel. The structures of all sections of a build are read in one
streaming pass over the annotation NRRD (offsets sorted, the data inflated once, nothing kept
but the voxels asked for), so a catalogue of many data sets never loads the volume (300 MB at
25 µm) nor reads it once per section.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import nrrd
import numpy as np
from numpy.typing import NDArray

from crawler.atlas import Alignment2d, Alignment3d, image_to_reference
from crawler.atlas.annotation import (  # the CCF volume's reading rules, shared with locate
    CHUNK,
    HEADER_LIMIT,
    INFLATE_LIMIT,
    _resolution,
    _streamable,
    read_volume,
    structure_at,
)
from crawler.catalogue.records import Described, ImageRecord
from crawler.errors import AllenMirrorError, ContentError

Point = tuple[float, float, float]


def section_centre(described: Described, image: ImageRecord) -> Point | None:
    """The reference point (µm) of the image's centre; None without alignments or a box."""
    record3d = described.alignment3d
    if image.alignment2d is None or record3d is None or image.box is None:
        return None
    if described.thickness is None:
        return None
    try:
        alignment2d = Alignment2d.from_record(image.alignment2d)
        alignment3d = Alignment3d.from_record(record3d)
    except AllenMirrorError:
        return None
    x, y, width, height = image.box
    point = image_to_reference(
        alignment2d,
        alignment3d,
        image.number,
        described.thickness,
        x + width / 2,
        y + height / 2,
    )
    values = (float(point.x), float(point.y), float(point.z))
    return values if all(math.isfinite(v) for v in values) else None


def structures_at(path: Path, points: Sequence[Point]) -> list[int]:
    """The annotation value at each point (0 outside the volume), in one pass over the file."""
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
