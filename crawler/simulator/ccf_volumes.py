"""The CCF 2017 volumes of the informatics archive: annotation (uint32) and template (uint16).

Same form as the real files (ALLEN_API.md §6): ``NRRD0004``, dimension 3, axes in the order
anterior->posterior, superior->inferior, left->right, ``space directions`` of R µm, gzip
encoding, and the real sizes (528 x 320 x 456 at 25 µm, ``ceil(extent / R)`` at any R). The
brain is an ellipsoid where the synthetic alignments put the sections; inside it, 800 µm cells
each hold one structure of the simulator's ontology (a hash of the cell picks which), outside
it the label is 0. ``label_at`` is the one rule, used to build the file and by tests to ask
what a voxel holds. Tests use 100 µm (132 x 80 x 114, a few hundred kB); finer resolutions are
built slab by slab, so only the compressed body is ever held whole.
"""

from __future__ import annotations

import functools
import math
import zlib

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crawler.simulator import ontology
from crawler.simulator.grids import nrrd_header

ARCHIVE_PREFIX = "/informatics-archive/current-release/mouse_ccf"
RESOLUTIONS = (10, 25, 50, 100)
EXTENT_UM = (13200, 8000, 11400)  # p, i, r: 528 x 320 x 456 voxels at 25 µm
BRAIN_CENTRE_UM = (6600.0, 4000.0, 5700.0)
BRAIN_RADII_UM = (5600.0, 3500.0, 5000.0)
CELL_UM = 800  # a multiple of every resolution, so cells never split a voxel
# Every structure but the root can be drawn; the hash picks one per cell.
LABELS = np.array([s.id for s in ontology.STRUCTURES if s.id != ontology.ROOT_ID], np.int64)
_HASH = (73856093, 19349663, 83492791)
_NRRD_TYPES: dict[str, tuple[str, np.dtype[np.unsignedinteger]]] = {
    "annotation": ("unsigned int", np.dtype("<u4")),
    "template": ("unsigned short", np.dtype("<u2")),
}


def volume_shape(resolution: int) -> tuple[int, int, int]:
    """Voxels per axis at ``resolution`` µm, as the archive's files have them."""
    nx, ny, nz = (math.ceil(extent / resolution) for extent in EXTENT_UM)
    return nx, ny, nz


def _centres(
    i: ArrayLike, j: ArrayLike, k: ArrayLike, resolution: int
) -> tuple[NDArray[np.float64], ...]:
    return tuple((np.asarray(n, dtype=np.float64) + 0.5) * resolution for n in (i, j, k))


def _radius(i: ArrayLike, j: ArrayLike, k: ArrayLike, resolution: int) -> NDArray[np.float64]:
    """The ellipsoid's normalised radius² at voxel centres (≤ 1 inside the brain)."""
    terms = (
        ((c - centre) / semi) ** 2
        for c, centre, semi in zip(
            _centres(i, j, k, resolution), BRAIN_CENTRE_UM, BRAIN_RADII_UM, strict=True
        )
    )
    return np.asarray(sum(terms))


def _cell_labels() -> NDArray[np.uint32]:
    """One structure id per 800 µm cell of the reference space (a hash of the cell picks it)."""
    ci, cj, ck = np.ix_(*(np.arange(math.ceil(extent / CELL_UM)) for extent in EXTENT_UM))
    mixed = (ci * _HASH[0]) ^ (cj * _HASH[1]) ^ (ck * _HASH[2])
    labels: NDArray[np.uint32] = LABELS[mixed % len(LABELS)].astype(np.uint32)
    return labels


CELLS = _cell_labels()


def label_at(i: ArrayLike, j: ArrayLike, k: ArrayLike, resolution: int) -> NDArray[np.uint32]:
    """The annotation value of voxel (i, j, k) at ``resolution`` µm (vectorised; 0 outside)."""
    cells = tuple(np.asarray(n) * resolution // CELL_UM for n in (i, j, k))
    inside = _radius(i, j, k, resolution) <= 1.0
    return np.where(inside, CELLS[cells], np.uint32(0))


def intensity_at(i: ArrayLike, j: ArrayLike, k: ArrayLike, resolution: int) -> NDArray[np.uint16]:
    """The template value of voxel (i, j, k): brighter towards the middle of the brain."""
    radius = _radius(i, j, k, resolution)
    return np.where(radius <= 1.0, 100 + np.round(400 * (1.0 - radius)), 10).astype(np.uint16)


def header(kind: str, resolution: int) -> bytes:
    """The NRRD header the archive's files carry (their field order and spelling)."""
    return nrrd_header(_NRRD_TYPES[kind][0], volume_shape(resolution), resolution)


@functools.lru_cache(maxsize=8)
def volume_nrrd(kind: str, resolution: int) -> bytes:
    """The whole file: header, then the voxels gzip-compressed, first axis fastest.

    Built one left-right slab at a time (the slowest axis), so memory stays at one slab.
    """
    if kind not in _NRRD_TYPES or resolution not in RESOLUTIONS:
        raise KeyError(f"no {kind} volume at {resolution} µm")
    dtype = _NRRD_TYPES[kind][1]
    rule = label_at if kind == "annotation" else intensity_at
    nx, ny, nz = volume_shape(resolution)
    i, j = np.arange(nx)[:, None], np.arange(ny)[None, :]
    # wbits 31: a gzip stream (mtime 0, so the bytes never change); level 1: 3x faster here
    gzip = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [header(kind, resolution)]
    for k in range(nz):
        slab = rule(i, j, k, resolution).astype(dtype)
        parts.append(gzip.compress(slab.tobytes(order="F")))
    parts.append(gzip.flush())
    return b"".join(parts)


def archive_file(path: str) -> bytes | None:
    """The body of an archive path (under ``ARCHIVE_PREFIX``), or None if there is none."""
    names = {
        f"{ARCHIVE_PREFIX}/annotation/ccf_2017/annotation_{r}.nrrd": ("annotation", r)
        for r in RESOLUTIONS
    }
    names.update(
        {
            f"{ARCHIVE_PREFIX}/average_template/average_template_{r}.nrrd": ("template", r)
            for r in RESOLUTIONS
        }
    )
    found = names.get(path)
    return None if found is None else volume_nrrd(*found)
