"""Thumbnails of mirrored section images, made once and kept by the image's sha256.

A thumbnail is named after the digest of what it shows (``thumbs/ab/<sha256>.jpg``: the image's
sha256, or for a tiled image a hash of its tiles' sha256s), so a changed image gets a new
thumbnail and an unchanged one is never decoded again. A page gives every ``<img>`` its width
and height from the thumbnail's JPEG header, so no index of every thumbnail is kept in memory.
JPEG decoding uses Pillow's draft mode (the decoder scales by 1/2 to 1/8 itself), and tiled
images are stitched from their tiles scaled down, never at full size.
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

THUMB = 160  # the longer side, in pixels
QUALITY = 82
LEGACY_INDEX = "index.json"  # an earlier version kept every thumbnail's size here
SPILL_DIGESTS = 20_000  # digests buffered before they are appended to the bucket files
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
    """The ``thumbs/`` directory: one thumbnail per digest. Nothing about all of them is held in
    memory: a thumbnail's size is read from its own header when a page shows it."""

    def __init__(self, root: Path, *, workers: int | None = None) -> None:
        self.root = root
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.made = 0  # thumbnails made by this build

    def exists(self, digest: str) -> bool:
        return (self.root / thumb_name(digest)).is_file()

    def size(self, digest: str) -> tuple[int, int] | None:
        """The thumbnail's width and height (its JPEG header), or None if there is none."""
        try:
            with Image.open(self.root / thumb_name(digest)) as image:
                return image.size
        except (OSError, UnidentifiedImageError, ValueError):
            return None

    def ensure(self, jobs: Iterable[ThumbJob]) -> dict[str, tuple[int, int]]:
        """Each job's thumbnail size, made (a few at a time) where there is none yet; a digest
        whose image cannot be decoded is left out."""
        sizes: dict[str, tuple[int, int]] = {}
        todo: dict[str, ThumbJob] = {}
        for job in jobs:
            if not job.digest or job.digest in sizes or job.digest in todo:
                continue
            size = self.size(job.digest)
            if size is None:
                todo[job.digest] = job
            else:
                sizes[job.digest] = size
        if todo:
            with ThreadPoolExecutor(self.workers) as pool:
                for digest, made in zip(todo, pool.map(self._make, todo.values()), strict=True):
                    if made is not None:
                        sizes[digest] = made
                        self.made += 1
        return sizes

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

    def keep_only(self, shown: Shown) -> int:
        """Remove thumbnails no page shows any more, one ``thumbs/xx/`` bucket at a time;
        returns how many went."""
        (self.root / LEGACY_INDEX).unlink(missing_ok=True)
        try:
            buckets = sorted(entry.name for entry in os.scandir(self.root) if entry.is_dir())
        except OSError:
            return 0
        removed = 0
        for bucket in buckets:
            keep = shown.bucket(bucket)
            for entry in os.scandir(self.root / bucket):
                digest = entry.name.removesuffix(".jpg")
                if entry.name.endswith(".jpg") and digest not in keep:
                    os.unlink(entry.path)
                    removed += 1
        return removed


class Shown:
    """The digests the pages show, spilled to one file per ``thumbs/`` bucket (the digest's
    first two characters), so sweeping old thumbnails holds one bucket's digests at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._buffer: dict[str, list[str]] = {}
        self._buffered = 0

    def add(self, digests: Iterable[str]) -> None:
        for digest in digests:
            self._buffer.setdefault(digest[:2], []).append(digest + "\n")
            self._buffered += 1
        if self._buffered >= SPILL_DIGESTS:
            self.flush()

    def flush(self) -> None:
        for bucket, lines in self._buffer.items():
            with (self.root / f"{bucket}.txt").open("a", encoding="ascii") as handle:
                handle.writelines(lines)
        self._buffer, self._buffered = {}, 0

    def bucket(self, bucket: str) -> set[str]:
        self.flush()
        try:
            return set((self.root / f"{bucket}.txt").read_text(encoding="ascii").split())
        except OSError:
            return set()


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
