"""Reading a mirrored file back, trusting nothing: its bytes must hash to the manifest's sha256.

A member is one image of a sample: a whole JPEG, or the tiles of one (stitched here, on the
grid the tile's ``index.json`` records). Pixels are decoded with Pillow into numpy arrays.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crawler.errors import CorruptFileError

Pixels = NDArray[np.uint8]
STITCHED_JPEG_QUALITY = 95  # a stitched image is re-encoded once; 95 keeps it near-lossless


@dataclass(frozen=True, slots=True)
class Part:
    """One mirrored file: where it is and what the manifest says of it."""

    file: str  # the path as a string: a Path per file cost more than reading a small one
    relpath: str  # relative to OUT, as the manifest keeps it
    size: int
    sha256: str
    tile: tuple[int, int] | None = None  # (row, col) of a tile; None for a whole image

    @property
    def path(self) -> Path:
        return Path(self.file)

    def read(self) -> bytes:
        """The file's bytes, checked against the recorded size and sha256 while read."""
        try:
            with open(self.file, "rb") as handle:
                data = handle.read()
        except FileNotFoundError as exc:
            raise CorruptFileError(self.path, "missing") from exc
        if len(data) != self.size:
            raise CorruptFileError(self.path, f"{len(data)} bytes, the manifest says {self.size}")
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise CorruptFileError(self.path, "sha256 differs from the manifest")
        return data

    def intact(self) -> bool:
        """Present with the recorded size (a stat; the hash is checked when read)."""
        try:
            return os.stat(self.file).st_size == self.size
        except OSError:
            return False


@dataclass(frozen=True, slots=True)
class TileIndex:
    """What stitching needs of a tiled image's ``index.json``."""

    tile_size: int
    width: int
    height: int

    @classmethod
    def read(cls, path: Path) -> TileIndex:
        try:
            document: dict[str, Any] = json.loads(path.read_bytes())
            return cls(
                int(document["tile_size"]),
                int(document["tier_width"]),
                int(document["tier_height"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptFileError(path, "cannot read the tile index") from exc


@dataclass(frozen=True, slots=True)
class Member:
    """One image of a sample (section, projection or expression), whole or as tiles."""

    kind: str
    parts: tuple[Part, ...]
    index_path: Path | None = None  # tiles only: the image's index.json
    window: tuple[int, ...] | None = None  # the colour window its URL asked for

    @property
    def tiled(self) -> bool:
        return self.index_path is not None

    @property
    def size(self) -> int:
        """Bytes of the mirrored files."""
        return sum(part.size for part in self.parts)

    @property
    def sha256(self) -> str | None:
        """The mirrored file's sha256 (whole images; a stitched image has no single file)."""
        return None if self.tiled else self.parts[0].sha256

    def read_bytes(self) -> bytes:
        """The JPEG: the mirrored file's own bytes (checked), or the tiles stitched and encoded."""
        if not self.tiled:
            return self.parts[0].read()
        return encode_jpeg(self.pixels())

    def pixels(self) -> Pixels:
        """Height x width x 3 RGB uint8; tiles are checked and pasted on their grid."""
        if not self.tiled:
            return decode(self.parts[0].read(), self.parts[0].path)
        assert self.index_path is not None
        index = TileIndex.read(self.index_path)
        canvas = np.zeros((index.height, index.width, 3), dtype=np.uint8)
        for top, left, tile in self.tiles(index):
            height = min(tile.shape[0], index.height - top)
            width = min(tile.shape[1], index.width - left)
            canvas[top : top + height, left : left + width] = tile[:height, :width]
        return canvas

    def tiles(self, index: TileIndex | None = None) -> Iterator[tuple[int, int, Pixels]]:
        """(top, left, pixels) of each tile in tier pixels, one decoded tile at a time."""
        if index is None:
            assert self.index_path is not None
            index = TileIndex.read(self.index_path)
        for part in self.parts:
            row, col = part.tile or (0, 0)
            yield row * index.tile_size, col * index.tile_size, decode(part.read(), part.path)


def decode(data: bytes, path: Path) -> Pixels:
    """RGB pixels of a JPEG (greyscale and palette images converted)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise CorruptFileError(path, f"not a decodable image ({exc})") from exc


def encode_jpeg(pixels: Pixels) -> bytes:
    """A stitched image as one JPEG (Pillow's encoder is deterministic for the same input)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=STITCHED_JPEG_QUALITY)
    return buffer.getvalue()
