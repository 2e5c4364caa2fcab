"""Grid volume downloads (ALLEN_API.md §4): gzip NRRD projection grids and expression zips.

Volumes are synthetic and shrunk well below the real 528x320x456 @ 25 µm so tests stay fast;
the shape still follows the requested resolution. Output is deterministic (fixed mtimes).
"""

from __future__ import annotations

import functools
import gzip
import io
import math
import random
import zipfile
from array import array

from crawler.simulator.imaging import ParamError

PROJECTION_TYPES = (
    "projection_density",
    "projection_energy",
    "injection_fraction",
    "injection_density",
    "injection_energy",
    "data_mask",
)
RESOLUTIONS = (10, 25, 50, 100)
EXPRESSION_VOLUMES = ("energy", "density", "intensity")
EXTENT_UM = (13200, 8000, 11400)  # 528 x 320 x 456 voxels at 25 µm
GRID_SHRINK = 16  # every side is this many times smaller than the real grid
EXPRESSION_RESOLUTION = 200
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def grid_shape(resolution: int, shrink: int = GRID_SHRINK) -> tuple[int, int, int]:
    """Voxel counts per axis for a resolution, after shrinking."""
    nx, ny, nz = (math.ceil(extent / resolution / shrink) for extent in EXTENT_UM)
    return nx, ny, nz


def _volume(seed: str, shape: tuple[int, int, int], binary: bool) -> bytes:
    """A separable blob of float32 values, little-endian, x fastest (NRRD order)."""
    rng = random.Random(seed)
    nx, ny, nz = shape
    profiles = []
    for n in shape:
        centre, width = rng.uniform(0.3, 0.7) * n, max(1.0, rng.uniform(0.15, 0.3) * n)
        profiles.append([max(0.0, 1 - abs(i - centre) / width) for i in range(n)])
    px, py, pz = profiles
    zero_row = bytes(4 * nx)
    out = bytearray()
    for z in range(nz):
        for y in range(ny):
            weight = py[y] * pz[z]
            if weight == 0:
                out += zero_row
            elif binary:
                out += array("f", [1.0 if v * weight > 0.05 else 0.0 for v in px]).tobytes()
            else:
                out += array("f", [v * weight for v in px]).tobytes()
    return bytes(out)


@functools.lru_cache(maxsize=64)
def projection_nrrd(data_set_id: int, image: str, resolution: int) -> bytes:
    """`/grid_data/download_file/<id>?image=<type>&resolution=<r>` as a gzip-encoded NRRD."""
    if image not in PROJECTION_TYPES:
        raise ParamError(f"unknown image type {image!r}")
    if resolution not in RESOLUTIONS:
        raise ParamError(f"resolution must be one of {RESOLUTIONS}")
    shape = grid_shape(resolution)
    spacing = resolution * GRID_SHRINK
    header = nrrd_header("float", shape, spacing)
    data = _volume(f"{data_set_id}:{image}", shape, binary=image == "data_mask")
    return header + gzip.compress(data, compresslevel=6, mtime=0)


def nrrd_header(nrrd_type: str, shape: tuple[int, int, int], spacing: float) -> bytes:
    """The NRRD header Allen's files carry (their field order and spelling), gzip-encoded data."""
    lines = [
        "NRRD0004",
        "# Complete NRRD file format specification at:",
        "# http://teem.sourceforge.net/nrrd/format.html",
        f"type: {nrrd_type}",
        "dimension: 3",
        "space: left-posterior-superior",
        "sizes: {} {} {}".format(*shape),
        f"space directions: ({spacing},0,0) (0,{spacing},0) (0,0,{spacing})",
        "kinds: domain domain domain",
        "endian: little",
        "encoding: gzip",
        "space origin: (0,0,0)",
        "",
        "",
    ]
    return "\n".join(lines).encode("ascii")


def _mhd(name: str, shape: tuple[int, int, int]) -> str:
    return "\n".join(
        [
            "ObjectType = Image",
            "NDims = 3",
            "BinaryData = True",
            "BinaryDataByteOrderMSB = False",
            "CompressedData = False",
            "TransformMatrix = 1 0 0 0 1 0 0 0 1",
            "Offset = 0 0 0",
            "CenterOfRotation = 0 0 0",
            "AnatomicalOrientation = RAI",
            f"ElementSpacing = {EXPRESSION_RESOLUTION} {EXPRESSION_RESOLUTION} "
            f"{EXPRESSION_RESOLUTION}",
            "DimSize = {} {} {}".format(*shape),
            "ElementType = MET_FLOAT",
            f"ElementDataFile = {name}.raw",
            "",
        ]
    )


def expression_volumes(include: str | None) -> tuple[str, ...]:
    """Parse `include=energy,density,intensity`; energy alone when absent (inferred)."""
    if include is None or include == "":
        return ("energy",)
    names = tuple(part.strip() for part in include.split(","))
    unknown = [n for n in names if n not in EXPRESSION_VOLUMES]
    if unknown:
        raise ParamError(f"unknown volumes {unknown}")
    return tuple(dict.fromkeys(names))


@functools.lru_cache(maxsize=64)
def expression_zip(data_set_id: int, volumes: tuple[str, ...]) -> bytes:
    """`/grid_data/download/<id>?include=...` as a zip of .mhd/.raw pairs."""
    shape = grid_shape(EXPRESSION_RESOLUTION, shrink=2)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in volumes:
            for filename, payload in (
                (f"{name}.mhd", _mhd(name, shape).encode("ascii")),
                (f"{name}.raw", _volume(f"{data_set_id}:{name}", shape, binary=False)),
            ):
                info = zipfile.ZipInfo(filename, date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, payload)
    return buffer.getvalue()
