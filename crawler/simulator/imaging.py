"""Image download parameters (ALLEN_API.md §3) validated into a canonical render request.

Two URLs meaning the same pixels yield the same `RenderSpec`, which keys the render cache and
makes the download services and the tile server return identical bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from crawler.simulator.schema import Record

KINDS = ("image", "projection", "expression", "annotation")
DEFAULT_QUALITY = 95  # "default highest": 95 is Pillow's recommended ceiling
MAX_DOWNSAMPLE = 15
# Live limit undocumented; whole images at full resolution must be fetched as tiles (§3).
MAX_OUTPUT_PIXELS = 40_000_000
FULL_WINDOW = (0, 4095, 0, 4095, 0, 4095)
_TRUE = frozenset({"true", "t", "1"})
_FALSE = frozenset({"false", "f", "0"})


class ParamError(ValueError):
    """An image request the service answers with HTTP 400."""


@dataclass(frozen=True)
class Box:
    """The image's bounding box inside the full-resolution scan."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class RenderSpec:
    """Everything that determines the JPEG bytes, after defaults and clipping."""

    image_id: int
    version: int
    kind: str
    box: Box
    downsample: int
    left: int  # full-resolution origin of the delivered region (after clipping)
    top: int
    out_width: int  # delivered tier pixels
    out_height: int
    quality: int
    window: tuple[int, int, int, int, int, int]


def _int(query: Mapping[str, str], name: str, default: int, lo: int | None = None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(f"{name} must be an integer, got {raw!r}") from None
    if lo is not None and value < lo:
        raise ParamError(f"{name} must be at least {lo}")
    return value


def _flag(query: Mapping[str, str], name: str) -> bool:
    raw = query.get(name)
    if raw is None:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ParamError(f"{name} must be true or false, got {raw!r}")


def image_kind(query: Mapping[str, str]) -> str:
    """Which rendering a request asks for: the image, or one of its overlays."""
    kinds = {kind for kind in ("projection", "expression", "annotation") if _flag(query, kind)}
    view = query.get("view")
    if view is not None:
        if view not in ("projection", "expression"):
            raise ParamError(f"unknown view {view!r}")
        kinds.add(view)
    if len(kinds) > 1:
        raise ParamError(f"conflicting views: {sorted(kinds)}")
    return kinds.pop() if kinds else "image"


def colour_window(
    query: Mapping[str, str], equalization: Record | None
) -> tuple[int, int, int, int, int, int]:
    """`range=rl,ru,gl,gu,bl,bu`, else the data set's Equalization, else 0..4095 (§3)."""
    raw = query.get("range")
    if raw is None:
        if equalization is None:
            return FULL_WINDOW
        names = ("red", "green", "blue")
        values = [equalization[f"{c}_{end}"] for c in names for end in ("lower", "upper")]
        raw_values = [int(v) if isinstance(v, int) else 0 for v in values]
    else:
        try:
            raw_values = [int(part) for part in raw.split(",")]
        except ValueError:
            raise ParamError(f"range must be six integers, got {raw!r}") from None
    if len(raw_values) != 6 or any(not 0 <= v <= 4095 for v in raw_values):
        raise ParamError(f"range must be six integers in 0..4095, got {raw!r}")
    rl, ru, gl, gu, bl, bu = raw_values
    if rl >= ru or gl >= gu or bl >= bu:
        raise ParamError("each range lower bound must be below its upper bound")
    return rl, ru, gl, gu, bl, bu


def image_box(image: Record) -> Box:
    values = [image[name] for name in ("x", "y", "width", "height")]
    x, y, width, height = (int(v) if isinstance(v, int) else 0 for v in values)
    return Box(x, y, width, height)


def plan_render(
    image: Record, version: int, equalization: Record | None, query: Mapping[str, str]
) -> RenderSpec:
    """Apply §3's defaults, clip the region to the bounding box, reject what cannot render."""
    box = image_box(image)
    downsample = _int(query, "downsample", 0, lo=0)
    if downsample > MAX_DOWNSAMPLE:
        raise ParamError(f"downsample must be at most {MAX_DOWNSAMPLE}")
    quality = _int(query, "quality", DEFAULT_QUALITY, lo=0)
    if quality > 100:
        raise ParamError("quality must be within 0..100")
    scale = 2**downsample
    left = _int(query, "left", box.x)
    top = _int(query, "top", box.y)
    width = _int(query, "width", math.ceil(box.width / scale), lo=1)
    height = _int(query, "height", math.ceil(box.height / scale), lo=1)
    x0, x1 = max(left, box.x), min(left + width * scale, box.x + box.width)
    y0, y1 = max(top, box.y), min(top + height * scale, box.y + box.height)
    if x1 <= x0 or y1 <= y0:
        raise ParamError("requested region lies outside the image")
    out_width, out_height = math.ceil((x1 - x0) / scale), math.ceil((y1 - y0) / scale)
    if out_width * out_height > MAX_OUTPUT_PIXELS:
        raise ParamError(f"region of {out_width}x{out_height} pixels is too large; use tiles")
    image_id = image["id"]
    assert isinstance(image_id, int)
    return RenderSpec(
        image_id=image_id,
        version=version,
        kind=image_kind(query),
        box=box,
        downsample=downsample,
        left=x0,
        top=y0,
        out_width=out_width,
        out_height=out_height,
        quality=quality,
        window=colour_window(query, equalization),
    )
