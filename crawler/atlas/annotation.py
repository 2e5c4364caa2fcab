"""CCF annotation volumes: which structure holds a point given in reference-space µm.

The CCF 2017 NRRDs (``annotation_{10,25,50,100}.nrrd``) store axes in the order anterior ->
posterior, superior -> inferior, left -> right, which are the axes of the image
synchronization service's x, y, z: voxel ``floor(x / R), floor(y / R), floor(z / R)`` holds
the point, for a volume at R µm. We read the axes as the file stores them (pynrrd's default
Fortran order puts the first ``sizes`` entry first) and never reorder them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
