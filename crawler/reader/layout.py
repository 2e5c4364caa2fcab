"""What a mirrored item's path and URL say about it: tier, tile, colour window; and sample keys.

Pure functions over the strings the planner wrote (``crawler/plan.py``), so the reader never
guesses from folder listings: ``<data_set_id>/<kind>/ds<N>/<ssss>_<image_id>.jpg`` is a whole
image at tier N, ``<data_set_id>/<kind>/ds<N>/tiles/<ssss>_<image_id>/r<row>_c<col>.jpg`` one
tile of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

_WHOLE = re.compile(r"^(?P<root>[^/]+)/(?P<kind>[a-z_]+)/ds(?P<tier>\d+)/(?P<name>\d+_\d+)\.jpg$")
_TILE = re.compile(
    r"^(?P<root>[^/]+)/(?P<kind>[a-z_]+)/ds(?P<tier>\d+)/tiles/(?P<name>\d+_\d+)/"
    r"r(?P<row>\d+)_c(?P<col>\d+)\.jpg$"
)

Window = tuple[int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class ItemPlace:
    """Where an image item sits: its tier, and its tile's row and column (None: whole image)."""

    root: str
    kind: str
    tier: int
    tile: tuple[int, int] | None

    @property
    def tiled(self) -> bool:
        return self.tile is not None


def item_place(path: str) -> ItemPlace | None:
    """The place of an image item from its manifest path; None for anything else (grids, ...)."""
    match = _WHOLE.match(path)
    if match is not None:
        return ItemPlace(match["root"], match["kind"], int(match["tier"]), None)
    match = _TILE.match(path)
    if match is not None:
        tile = (int(match["row"]), int(match["col"]))
        return ItemPlace(match["root"], match["kind"], int(match["tier"]), tile)
    return None


def tile_directory(path: str) -> str:
    """The directory of a tile's path, where the image's ``index.json`` lives."""
    return path.rsplit("/", 1)[0]


def sample_key(data_set_id: int, section_number: int, image_id: int) -> str:
    """``{data_set_id}_{section_number:04d}_{image_id}``: no dots, so WebDataset readers split
    members at the first dot after it (``<key>.projection.jpg`` -> ``projection.jpg``)."""
    return f"{int(data_set_id)}_{int(section_number):04d}_{int(image_id)}"


def url_window(url: str) -> Window | None:
    """The ``range=rl,ru,gl,gu,bl,bu`` colour window a download URL asked for, if any."""
    if "range=" not in url:  # most URLs: decided without parsing the query
        return None
    values = parse_qs(urlsplit(url).query).get("range")
    if not values:
        return None
    parts = values[-1].split(",")
    if len(parts) != 6 or not all(p.strip().isdigit() for p in parts):
        return None
    rl, ru, gl, gu, bl, bu = (int(p) for p in parts)
    return (rl, ru, gl, gu, bl, bu)


def tier_size(full: int, tier: int) -> int:
    """Pixels of tier N of a full-resolution extent: ``ceil(full / 2^N)`` (ALLEN_API.md §3)."""
    return -(-max(0, int(full)) // (1 << tier))
