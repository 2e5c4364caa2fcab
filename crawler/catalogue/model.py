"""What the catalogue shows, and the pure functions that derive it from manifest rows.

A mirror path names everything a page needs: ``<dir>/<kind>/ds<N>/<NNNN>_<image>.jpg`` is a
whole image, ``<dir>/<kind>/ds<N>/tiles/<NNNN>_<image>/r<R>_c<C>.jpg`` one tile of it, and
anything else under ``<dir>/`` is a file of the data set (grids, unionizes). The tiles of one
image collapse into one ``Variant``, so a page holds one entry per section image, never one per
tile.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# kinds in the order a section's main thumbnail prefers them
KIND_ORDER = ("section", "annotation", "projection", "expression")
STATUSES = ("done", "failed", "pending", "removed")
ATLAS_WIDE = "ccf"  # the directory of the files of no data set (ontology, CCF volumes)

_WHOLE = re.compile(r"(?P<kind>[a-z_]+)/(?P<tier>ds\d+)/(?P<number>\d+)_(?P<image>\d+)\.jpg")
_TILE = re.compile(
    r"(?P<kind>[a-z_]+)/(?P<tier>ds\d+)/tiles/(?P<number>\d+)_(?P<image>\d+)/r\d+_c\d+\.jpg"
)

# One manifest row as the catalogue keeps it between its passes:
# path, kind, status, size, sha256, error, fetched_at (ISO text or None).
Row = tuple[str, str, str, int | None, str | None, str | None, str | None]


def directory_of(path: str) -> str:
    """The mirror directory a path belongs to: ``100141599``, ``atlas_1`` or ``ccf``."""
    return path.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where a path sits in its data set: the section, the image, the kind and tier."""

    number: int
    image_id: int
    kind: str
    tier: str
    tile_dir: str | None  # the tile directory relative to OUT, for a tile


def image_ref(path: str) -> ImageRef | None:
    """Parse a section image or tile path; None for any other file of the data set."""
    rest = path.split("/", 1)[1] if "/" in path else ""
    if match := _WHOLE.fullmatch(rest):
        tile_dir = None
    elif match := _TILE.fullmatch(rest):
        tile_dir = path.rsplit("/", 1)[0]
    else:
        return None
    return ImageRef(
        int(match["number"]), int(match["image"]), match["kind"], match["tier"], tile_dir
    )


@dataclass(slots=True)
class Variant:
    """One kind and tier of one section image: a whole file, or the tiles of one image."""

    kind: str
    tier: str
    path: str  # the file, or the tile directory, relative to OUT
    tiled: bool
    counts: dict[str, int] = field(default_factory=dict)
    size: int = 0
    digest: str = ""  # the file's sha256; for tiles, a hash of the tiles' sha256s in order
    error: str | None = None

    @property
    def status(self) -> str:
        """done only when every file (tile) is; failed if any failed; else what is left."""
        if self.counts.get("failed"):
            return "failed"
        if self.counts.get("pending"):
            return "pending"
        if self.counts.get("done"):
            return "done"
        return "removed"


@dataclass(slots=True)
class SectionEntry:
    """One section image of a data set page, with every variant the manifest holds."""

    number: int
    image_id: int
    variants: list[Variant] = field(default_factory=list)

    def main(self) -> Variant | None:
        """The variant to show: done before anything else, then by kind, whole before tiles."""

        def rank(variant: Variant) -> tuple[int, int, int, str]:
            kind = KIND_ORDER.index(variant.kind) if variant.kind in KIND_ORDER else 9
            return (variant.status != "done", kind, variant.tiled, variant.tier)

        return min(self.variants, key=rank) if self.variants else None

    @property
    def failed(self) -> list[Variant]:
        return [v for v in self.variants if v.status == "failed"]


@dataclass(slots=True)
class OtherFile:
    """A file of a data set that is not a section image: a grid volume, unionizes."""

    path: str
    kind: str
    status: str
    size: int
    error: str | None


def collapse(rows: Iterable[Row]) -> tuple[list[SectionEntry], list[OtherFile]]:
    """The rows of one directory as sections in order (tiles merged) and the other files."""
    sections: dict[tuple[int, int], SectionEntry] = {}
    variants: dict[tuple[int, str, str, bool], Variant] = {}
    tile_hashes: dict[tuple[int, str, str, bool], Any] = {}  # the tiles' sha256s, in id order
    others: list[OtherFile] = []
    for path, kind, status, size, sha256, error, _ in rows:
        ref = image_ref(path)
        if ref is None:
            others.append(OtherFile(path, kind, status, size or 0, error))
            continue
        tiled = ref.tile_dir is not None
        key = (ref.image_id, ref.kind, ref.tier, tiled)
        variant = variants.get(key)
        if variant is None:
            variant = Variant(ref.kind, ref.tier, ref.tile_dir or path, tiled)
            variants[key] = variant
            if tiled:
                tile_hashes[key] = hashlib.sha256()
            entry = sections.setdefault(
                (ref.number, ref.image_id), SectionEntry(ref.number, ref.image_id)
            )
            entry.variants.append(variant)
        variant.counts[status] = variant.counts.get(status, 0) + 1
        if status == "done":
            variant.size += size or 0
        if error and status != "done":
            variant.error = variant.error or error
        if tiled:
            tile_hashes[key].update(f"{path}:{sha256}\n".encode())
        else:
            variant.digest = sha256 or ""
    for key, hasher in tile_hashes.items():
        variants[key].digest = hasher.hexdigest()
    return [sections[key] for key in sorted(sections)], others


def failure_reason(error: str | None, http_status: int | None = None) -> str:
    """A short, countable reason for a failure: ``HTTP 404``, or the error's first clause.

    Errors carry URLs, paths and byte counts; the first clause without digits groups them.
    """
    if http_status is not None and http_status >= 400:
        return f"HTTP {http_status}"
    text = (error or "unknown").split(":", 1)[0].strip() or "unknown"
    text = re.sub(r"\d+", "N", text)
    return text if len(text) <= 48 else text[:47] + "…"
