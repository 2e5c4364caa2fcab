"""Table tests of the tile grid: shapes, clipped edges, exact cover without overlap, the index."""

from __future__ import annotations

import itertools

import pytest

from crawler.plan import (
    NO_CONTEXT,
    PlanOptions,
    section_renderings,
    tile_indexes,
)
from crawler.tiles import TileGrid, ceil_div, index_document, tile_grid
from tests.planning import plan_section_image


def image(width: int, height: int, x: int = 100, y: int = 50) -> dict[str, object]:
    return {
        "id": 7,
        "data_set_id": 3,
        "section_number": 12,
        "x": x,
        "y": y,
        "width": width,
        "height": height,
        "resolution": 0.35,
    }


@pytest.mark.parametrize(
    ("width", "height", "tier", "size", "rows", "cols", "last_width", "last_height"),
    [
        (1000, 700, 0, 256, 3, 4, 232, 188),  # clipped right and bottom
        (512, 256, 0, 256, 1, 2, 256, 256),  # divides exactly: no sliver
        (1001, 700, 2, 100, 2, 3, 51, 75),  # tier 2: 251 x 175 tier pixels
        (1000, 700, 2, 100, 2, 3, 50, 75),
        (100, 60, 0, 256, 1, 1, 100, 60),  # smaller than one tile
        (7, 5, 3, 16, 1, 1, 1, 1),  # a few full-resolution pixels round up to one
        (29494, 16115, 0, 1024, 16, 29, 822, 755),  # a real-sized connectivity section
        (0, 700, 0, 256, 0, 0, None, None),  # no geometry: no tiles
    ],
)
def test_grid_shape_and_clipped_edges(
    width: int,
    height: int,
    tier: int,
    size: int,
    rows: int,
    cols: int,
    last_width: int | None,
    last_height: int | None,
) -> None:
    grid = tile_grid(image(width, height), tier, size)
    assert (grid.rows, grid.cols) == (rows, cols)
    tiles = list(grid.tiles())
    assert len(tiles) == len(grid) == rows * cols
    if tiles:
        last = tiles[-1]
        assert (last.row, last.col) == (rows - 1, cols - 1)
        assert (last.width, last.height) == (last_width, last_height)
        # the clipped width of the last column is ceil(width / 2^N) - c*T
        assert last.width == ceil_div(width, 2**tier) - (cols - 1) * size


@pytest.mark.parametrize(
    ("width", "height", "tier", "size"),
    [(1000, 700, 0, 256), (1001, 703, 2, 100), (513, 257, 1, 64), (4097, 3, 4, 16)],
)
def test_tiles_cover_the_tier_image_exactly_once(
    width: int, height: int, tier: int, size: int
) -> None:
    x, y = 123, 45
    grid = tile_grid(image(width, height, x, y), tier, size)
    scale = 2**tier
    covered = [[0] * grid.tier_width for _ in range(grid.tier_height)]
    for tile in grid.tiles():
        # origins follow left = x + c*T*2^N, top = y + r*T*2^N
        assert tile.left == x + tile.col * size * scale
        assert tile.top == y + tile.row * size * scale
        assert 1 <= tile.width <= size and 1 <= tile.height <= size
        col0, row0 = (tile.left - x) // scale, (tile.top - y) // scale
        for row, col in itertools.product(
            range(row0, row0 + tile.height), range(col0, col0 + tile.width)
        ):
            covered[row][col] += 1
    assert grid.tier_width == ceil_div(width, scale)
    assert grid.tier_height == ceil_div(height, scale)
    assert all(count == 1 for line in covered for count in line)


def test_grid_rejects_nonsense_sizes() -> None:
    with pytest.raises(ValueError):
        tile_grid(image(10, 10), 0, 0)
    with pytest.raises(ValueError):
        tile_grid(image(10, 10), -1, 16)


def test_index_document_names_every_tile_with_origin_size_and_scale() -> None:
    grid = TileGrid(x=100, y=50, width=1000, height=700, tier=2, tile_size=100)
    document = index_document(grid, image(1000, 700), "section")
    assert document["tier"] == 2 and document["tile_size"] == 100
    assert (document["rows"], document["cols"]) == (2, 3)
    assert (document["tier_width"], document["tier_height"]) == (250, 175)
    assert document["um_per_pixel"] == pytest.approx(0.35 * 4)
    assert len(document["tiles"]) == 6
    first, last = document["tiles"][0], document["tiles"][-1]
    assert first == {
        "row": 0,
        "col": 0,
        "file": "r000_c000.jpg",
        "left": 100,
        "top": 50,
        "width": 100,
        "height": 100,
        "um_per_pixel": pytest.approx(1.4),
    }
    assert (last["left"], last["top"], last["width"], last["height"]) == (900, 450, 50, 75)


def test_tile_items_are_streamed_with_urls_paths_and_one_index_per_rendering() -> None:
    options = PlanOptions(downsample=2, tile=100, range=None, kinds=("section", "projection"))
    items = plan_section_image(image(1000, 700), options)
    first = next(items)  # a generator: nothing is listed up front
    assert first.path == "3/section/ds2/tiles/0012_7/r000_c000.jpg"
    assert first.ref == (
        "/api/v2/section_image_download/7?downsample=2&left=100&top=50&width=100&height=100"
    )
    rest = list(items)
    assert len(rest) == 2 * 6 - 1
    projection = [i for i in rest if i.kind == "projection"]
    assert projection[-1].path == "3/projection/ds2/tiles/0012_7/r001_c002.jpg"
    assert projection[-1].ref == (
        "/api/v2/projection_image_download/7?projection=true&downsample=2"
        "&left=900&top=450&width=50&height=75"
    )
    renderings = section_renderings(options, NO_CONTEXT)
    indexes = dict(tile_indexes("3", image(1000, 700), renderings, options))
    assert set(indexes) == {
        "3/section/ds2/tiles/0012_7/index.json",
        "3/projection/ds2/tiles/0012_7/index.json",
    }
