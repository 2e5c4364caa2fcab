"""Thumbnails of mirrored section images, made once and kept by the image's sha256.

A thumbnail is named after the digest of what it shows (``thumbs/ab/<sha256>.jpg``: the image's
sha256, or for a tiled image a hash of its tiles' sha256s), so a changed image gets a new
thumbnail and an unchanged one is never decoded again. ``thumbs/index.json`` maps each digest to
its thumbnail's size, so pages give every ``<img>`` its width and height without opening a
thumbnail. JPEG decoding uses Pillow's draft mode (the decoder scales by 1/2 to 1/8 itself),
and tiled images are stitched from their tiles scaled down, never at full size.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from crawler.localstore import write_atomic

THUMB = 160  # the longer side, in pixels
QUALITY = 82
INDEX = "index.json"
BACKGROUND = (236, 236, 236)  # where a tile is missing


@dataclass(frozen=True, slots=True)
class ThumbJob:
    """A thumbnail to make: from a whole file or from a tile directory, named by ``digest``."""

    digest: str
    source: Path  # the image file, or the tile directory (with its index.json)
    tiled: bool


def thumb_name(digest: str) -> str:
    """The thumbnail's path inside ``thumbs/``."""
    return f"{digest[:2]}/{digest}.jpg"


class Thumbnails:
    """The ``thumbs/`` directory and its index: which digests have a thumbnail, and its size."""

    def __init__(self, root: Path, *, workers: int | None = None) -> None:
        self.root = root
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.made = 0  # thumbnails made by this build
        try:
            loaded = json.loads((root / INDEX).read_bytes())
        except (OSError, ValueError):
            loaded = {}
        self.sizes: dict[str, tuple[int, int]] = {
            digest: (int(size[0]), int(size[1]))
            for digest, size in (loaded.items() if isinstance(loaded, dict) else [])
            if isinstance(size, list) and len(size) == 2
        }
        self._dirty = False

    def size(self, digest: str) -> tuple[int, int] | None:
        """The thumbnail's width and height, or None if there is none."""
        return self.sizes.get(digest)

    def ensure(self, jobs: Iterable[ThumbJob]) -> None:
        """Make the thumbnails not yet made (or whose file is gone), a few at a time."""
        todo = {
            job.digest: job
            for job in jobs
            if job.digest
            and (job.digest not in self.sizes or not (self.root / thumb_name(job.digest)).exists())
        }
        if not todo:
            return
        with ThreadPoolExecutor(self.workers) as pool:
            for digest, size in zip(todo, pool.map(self._make, todo.values()), strict=True):
                if size is None:
                    self.sizes.pop(digest, None)
                else:
                    self.sizes[digest] = size
                    self.made += 1
        self._dirty = True

    def _make(self, job: ThumbJob) -> tuple[int, int] | None:
        if job.tiled:
            image = stitch(job.source)
        else:
            opened = open_scaled(job.source, THUMB)
            image = opened[0] if opened is not None else None
        if image is None:
            return None
        image.thumbnail((THUMB, THUMB))
        if image.mode != "RGB":
            image = image.convert("RGB")
        target = self.root / thumb_name(job.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f"{target.name}.{os.getpid()}.part")
        image.save(part, "JPEG", quality=QUALITY)
        os.replace(part, target)
        return image.size

    def keep_only(self, digests: set[str]) -> int:
        """Remove thumbnails no page shows any more; returns how many went."""
        gone = [digest for digest in self.sizes if digest not in digests]
        for digest in gone:
            (self.root / thumb_name(digest)).unlink(missing_ok=True)
            del self.sizes[digest]
        self._dirty = self._dirty or bool(gone)
        return len(gone)

    def save(self) -> None:
        """Write the index if it changed."""
        if self._dirty:
            document = {d: list(s) for d, s in sorted(self.sizes.items())}
            write_atomic(self.root / INDEX, json.dumps(document).encode(), fsync=False)
            self._dirty = False


def open_scaled(path: Path, at_least: int) -> tuple[Image.Image, tuple[int, int]] | None:
    """The image decoded at the smallest JPEG scale still ``at_least`` pixels on its long side,
    and its true size; None for a missing or undecodable file (the page then says so)."""
    try:
        with Image.open(path) as image:
            size = image.size
            if image.format == "JPEG":
                ratio = max(size) / max(at_least, 1)
                image.draft("RGB", (math.ceil(size[0] / ratio), math.ceil(size[1] / ratio)))
            image.load()
            return image.copy(), size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def stitch(tile_dir: Path) -> Image.Image | None:
    """A small picture of a tiled image: each tile scaled into place on the tier's canvas,
    placed by the tile grid of the directory's ``index.json``; missing tiles stay grey."""
    try:
        grid: Any = json.loads((tile_dir / "index.json").read_bytes())
        tile_size = int(grid["tile_size"])
        width, height = int(grid["tier_width"]), int(grid["tier_height"])
        tiles = [(int(t["row"]), int(t["col"]), str(t["file"])) for t in grid["tiles"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    scale = min(1.0, 2 * THUMB / max(width, height, 1))  # twice the thumbnail, then resampled
    canvas = Image.new("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
    canvas.paste(BACKGROUND, (0, 0, canvas.width, canvas.height))
    for row, col, name in tiles:
        opened = open_scaled(tile_dir / name, max(1, math.ceil(tile_size * scale)))
        if opened is None:
            continue
        tile, (tile_width, tile_height) = opened
        size = (max(1, math.ceil(tile_width * scale)), max(1, math.ceil(tile_height * scale)))
        where = (round(col * tile_size * scale), round(row * tile_size * scale))
        canvas.paste(tile.convert("RGB").resize(size), where)
    return canvas
