"""Render a `RenderSpec` to JPEG bytes whose pixels depend only on full-resolution coordinates.

Each channel is a triangle wave along one axis, a checkerboard, or a constant, evaluated at the
full-resolution coordinate every delivered pixel samples. Tiles of a tier therefore stitch into
the whole image at that tier (up to JPEG loss), and Python work stays O(width + height).
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageChops

from crawler.simulator.imaging import RenderSpec


@dataclass(frozen=True)
class Wave:
    """A triangle wave of raw 12-bit values along one axis."""

    axis: str  # "x" or "y"
    period: float  # fraction of the image's extent along that axis
    phase: float
    amplitude: int = 4095  # connectivity scans are dim: most signal sits below ~1000
    grain: int = 0  # per-coordinate texture, so JPEG sizes resemble real scans


@dataclass(frozen=True)
class Checker:
    """Blocks alternating between two raw values, like an annotation or a mask."""

    block: float  # fraction of the image width
    low: int
    high: int


@dataclass(frozen=True)
class Flat:
    raw: int


Channel = Wave | Checker | Flat

_KINDS: dict[str, tuple[Channel, Channel, Channel]] = {
    "image": (Wave("x", 0.8, 0.0, 1000, 120), Wave("y", 0.9, 0.25, 1000, 120), Flat(0)),
    "projection": (Wave("y", 0.5, 0.1), Wave("x", 0.35, 0.6), Checker(1 / 6, 0, 4095)),
    "expression": (Checker(1 / 10, 0, 3500), Wave("x", 0.25, 0.3), Flat(1000)),
    "annotation": (Checker(1 / 8, 300, 3900), Checker(1 / 5, 3900, 300), Wave("y", 0.6, 0.0)),
}


def _salt(spec: RenderSpec) -> int:
    """A per-image, per-version number so images and their new versions differ."""
    digest = hashlib.blake2b(f"{spec.image_id}:{spec.kind}:{spec.version}".encode(), digest_size=4)
    return int.from_bytes(digest.digest(), "big")


def _grain(coordinate: int, salt: int, amplitude: int) -> int:
    """Hash-like texture of a full-resolution coordinate (Knuth's multiplicative hash)."""
    if amplitude <= 0:
        return 0
    return (((coordinate + salt) * 2654435761) >> 16) % amplitude


def _windowed(raw: list[int], lower: int, upper: int) -> bytes:
    span = upper - lower
    return bytes(min(255, max(0, ((r - lower) * 255 + span // 2) // span)) for r in raw)


def _coordinates(spec: RenderSpec, axis: str) -> list[int]:
    """Full-resolution coordinate sampled by each delivered pixel along an axis."""
    scale = 2**spec.downsample
    if axis == "x":
        return [spec.left + j * scale for j in range(spec.out_width)]
    return [spec.top + j * scale for j in range(spec.out_height)]


def _strip(spec: RenderSpec, axis: str, values: bytes) -> Image.Image:
    """A one-pixel row or column stretched over the output size."""
    size = (spec.out_width, spec.out_height)
    if axis == "x":
        strip = Image.frombytes("L", (spec.out_width, 1), values)
    else:
        strip = Image.frombytes("L", (1, spec.out_height), values)
    return strip.resize(size, Image.Resampling.NEAREST)


def _channel(spec: RenderSpec, channel: Channel, lower: int, upper: int, salt: int) -> Image.Image:
    box, size = spec.box, (spec.out_width, spec.out_height)
    if isinstance(channel, Flat):
        value = _windowed([(channel.raw + salt) % 4096], lower, upper)[0]
        return Image.new("L", size, value)
    if isinstance(channel, Wave):
        origin, extent = (box.x, box.width) if channel.axis == "x" else (box.y, box.height)
        period = max(1.0, extent * channel.period)
        phase = channel.phase + (salt % 997) / 997
        raw = []
        for coordinate in _coordinates(spec, channel.axis):
            t = ((coordinate - origin) / period + phase) % 1.0
            grain = _grain(coordinate, salt, channel.grain)
            raw.append(round(channel.amplitude * (1 - abs(2 * t - 1))) + grain)
        return _strip(spec, channel.axis, _windowed(raw, lower, upper))
    block = max(1, round(box.width * channel.block))
    shift = salt % block
    parity = {
        axis: bytes(255 * (((c - origin + shift) // block) % 2) for c in _coordinates(spec, axis))
        for axis, origin in (("x", box.x), ("y", box.y))
    }
    mask = ImageChops.difference(_strip(spec, "x", parity["x"]), _strip(spec, "y", parity["y"]))
    low, high = _windowed([channel.low, channel.high], lower, upper)
    return Image.composite(Image.new("L", size, high), Image.new("L", size, low), mask)


def render_jpeg(spec: RenderSpec) -> bytes:
    """The JPEG for one canonical request; identical specs give identical bytes."""
    salt = _salt(spec)
    rl, ru, gl, gu, bl, bu = spec.window
    red, green, blue = _KINDS[spec.kind]
    image = Image.merge(
        "RGB",
        (
            _channel(spec, red, rl, ru, salt),
            _channel(spec, green, gl, gu, salt // 7),
            _channel(spec, blue, bl, bu, salt // 49),
        ),
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=spec.quality)
    return buffer.getvalue()


class RenderCache:
    """A thread-safe LRU of rendered bytes, bounded by their total size."""

    def __init__(self, max_bytes: int = 128 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[RenderSpec, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, spec: RenderSpec) -> bytes:
        with self._lock:
            cached = self._entries.get(spec)
            if cached is not None:
                self._entries.move_to_end(spec)
                return cached
        body = render_jpeg(spec)
        with self._lock:
            if spec not in self._entries and len(body) <= self.max_bytes:
                self._entries[spec] = body
                self._size += len(body)
                while self._size > self.max_bytes:
                    _, evicted = self._entries.popitem(last=False)
                    self._size -= len(evicted)
        return body
