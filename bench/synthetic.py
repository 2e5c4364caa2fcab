"""`python -m bench.synthetic`: plan ~1,000,000 tile items through the real manifest API.

Stands in for `allen-mirror plan --tile 256 --downsample 0` while that option does not exist:
tile refs are built from real catalogue images (so a resumed mirror's requests reach real
images), and are inserted with `Manifest.add_items`, one call per data set, from generators.
It skips what the real command adds on top (RMA seeding; holding a data set's items in a list).

Input: a JSON file of section images ({id, data_set_id, section_number, x, y, width, height}).
Output: one JSON line, {"items", "added", "seconds"}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio

from bench.selection import tile_grid
from crawler.manifest import open_manifest
from crawler.plan import Item

KIND = "tile"


def tile_items(images: Iterable[Mapping[str, Any]], tile: int, downsample: int) -> Iterator[Item]:
    """Every tile of every image, as the download service's region requests."""
    for image in images:
        image_id, data_set_id = int(image["id"]), int(image["data_set_id"])
        x, y = int(image["x"]), int(image["y"])
        folder = f"{data_set_id}/{KIND}{tile}/ds{downsample}/{int(image['section_number']):04d}"
        for row, col, left, top, width, height in tile_grid(
            int(image["width"]), int(image["height"]), tile, downsample
        ):
            yield Item(
                ref=(
                    f"/api/v2/section_image_download/{image_id}?downsample={downsample}"
                    f"&left={x + left}&top={y + top}&width={width}&height={height}"
                ),
                path=f"{folder}_{image_id}/{row:03d}_{col:03d}.jpg",
                kind=KIND,
                data_set_id=data_set_id,
                image_id=image_id,
            )


async def insert(
    manifest_url: str, images: list[dict[str, Any]], items: int, tile: int, api_base: str
) -> dict[str, Any]:
    started = time.perf_counter()
    manifest = await open_manifest(manifest_url)
    added = planned = 0

    def counted(group: Iterable[Item]) -> Iterator[Item]:
        nonlocal planned
        for item in group:
            planned += 1
            yield item

    try:
        limited = itertools.islice(tile_items(images, tile, 0), items)
        for _data_set, group in itertools.groupby(limited, key=lambda item: item.data_set_id):
            added += await manifest.add_items(counted(group), api_base)
    finally:
        await manifest.close()
    return {"items": planned, "added": added, "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.synthetic", description=__doc__)
    parser.add_argument("--manifest", required=True, help="SQLAlchemy URL of the manifest")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--api-base", required=True)
    args = parser.parse_args(argv)
    images = json.loads(args.images.read_text())
    result = anyio.run(insert, args.manifest, images, args.items, args.tile, args.api_base)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
