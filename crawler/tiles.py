"""Tile grids (ALLEN_API.md §3): an image at tier N cut into T x T tier-pixel tiles; pure.

Tile (r, c) starts at ``left = x + c*T*2^N``, ``top = y + r*T*2^N`` in full-resolution pixels and
is ``T`` tier pixels wide and high, clipped at the right and bottom edges, so the tiles cover the
``ceil(width/2^N) x ceil(height/2^N)`` tier pixels of the image exactly once, without overlap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer ceiling division for non-negative numbers (no floats, exact at any size)."""
    return -(-numerator // denominator)


# Not frozen: built per item, and a frozen dataclass's __init__ (object.__setattr__ per field)
# costs about four times a plain one's.
@dataclass(slots=True)
class Tile:
    """One tile: where it starts in the full-resolution scan, and its size in tier pixels."""

    row: int
    col: int
    left: int
    top: int
    width: int
    height: int

    @property
    def name(self) -> str:
        """``r<row:03d>_c<col:03d>.jpg``, the file name inside the image's tile directory."""
        return f"r{self.row:03d}_c{self.col:03d}.jpg"


@dataclass(slots=True)
class TileGrid:
    """The grid of one image's bounding box (full-resolution x, y, width, height) at a tier."""

    x: int
    y: int
    width: int
    height: int
    tier: int
    tile_size: int

    @property
    def scale(self) -> int:
        """Full-resolution pixels per tier pixel."""
        return 1 << self.tier

    @property
    def tier_width(self) -> int:
        return ceil_div(self.width, self.scale)

    @property
    def tier_height(self) -> int:
        return ceil_div(self.height, self.scale)

    @property
    def rows(self) -> int:
        """Tile rows; an image without area has none (and no columns either)."""
        return ceil_div(self.tier_height, self.tile_size) if self.tier_width else 0

    @property
    def cols(self) -> int:
        return ceil_div(self.tier_width, self.tile_size) if self.tier_height else 0

    def __len__(self) -> int:
        return self.rows * self.cols

    def tiles(self) -> Iterator[Tile]:
        """Row by row, left to right; generated, never listed, so huge grids cost no memory."""
        step = self.tile_size * self.scale
        for row in range(self.rows):
            height = min(self.tile_size, self.tier_height - row * self.tile_size)
            for col in range(self.cols):
                width = min(self.tile_size, self.tier_width - col * self.tile_size)
                yield Tile(row, col, self.x + col * step, self.y + row * step, width, height)


def tile_grid(image: Mapping[str, Any], tier: int, tile_size: int) -> TileGrid:
    """The grid of a SectionImage or AtlasImage record (missing geometry gives an empty grid)."""
    if tile_size < 1 or tier < 0:
        raise ValueError(f"tile size must be positive and tier non-negative: {tile_size}, {tier}")

    def number(name: str) -> int:
        return max(0, int(image.get(name) or 0))

    return TileGrid(number("x"), number("y"), number("width"), number("height"), tier, tile_size)


def index_document(grid: TileGrid, image: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The per-image ``index.json``: enough to stitch or sample tiles without guessing.

    ``um_per_pixel`` is the image's resolution (µm per full-resolution pixel) times ``2^tier``.
    """
    resolution = float(image.get("resolution") or 0.0)
    um_per_pixel = resolution * grid.scale
    return {
        "image_id": int(image["id"]),
        "data_set_id": int(image.get("data_set_id") or 0),
        "section_number": int(image.get("section_number") or 0),
        "kind": kind,
        "tier": grid.tier,
        "tile_size": grid.tile_size,
        "rows": grid.rows,
        "cols": grid.cols,
        "tier_width": grid.tier_width,
        "tier_height": grid.tier_height,
        "full_resolution_box": {
            "x": grid.x,
            "y": grid.y,
            "width": grid.width,
            "height": grid.height,
        },
        "resolution_um": resolution,
        "um_per_pixel": um_per_pixel,
        "tiles": [
            {
                "row": tile.row,
                "col": tile.col,
                "file": tile.name,
                "left": tile.left,
                "top": tile.top,
                "width": tile.width,
                "height": tile.height,
                "um_per_pixel": um_per_pixel,
            }
            for tile in grid.tiles()
        ],
    }
