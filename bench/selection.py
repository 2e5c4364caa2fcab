"""Pure decisions of the harness: catalogue shapes, data set picks, tile grids, the ideal bound."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# Real connectivity sections are 25,000-30,000 x 16,000-21,000 px (ALLEN_API.md §3).
TILES_PER_FULL_IMAGE = 7_800  # about (27500 / 256) * (18500 / 256)
DEFAULT_SECTIONS = 140
CONNECTIVITY_BUILT_IN = 2  # 100141599 and 126862385 are usable; 500000001 is marked failed


def catalogue_shape(
    images: int, *, data_sets: int = 10, most_per_data_set: int = 2500
) -> tuple[int, int]:
    """(sections per data set, extra connectivity data sets) for ``images`` usable images.

    About ``data_sets`` data sets (so a mirror exercises several), one spare for failed sections.
    """
    per_data_set = min(most_per_data_set, max(1, math.ceil(images / max(1, data_sets))))
    needed = math.ceil(images / per_data_set) + 1
    return per_data_set, max(0, needed - CONNECTIVITY_BUILT_IN)


def scale_catalogue_shape(items: int) -> tuple[int, int]:
    """(sections, extra data sets) of a full-scale catalogue holding about ``items`` tiles."""
    sections = max(1, min(DEFAULT_SECTIONS, math.ceil(items / TILES_PER_FULL_IMAGE)))
    data_sets = math.ceil(items / (sections * TILES_PER_FULL_IMAGE)) + 1
    return sections, max(0, data_sets - CONNECTIVITY_BUILT_IN)


def pick_data_sets(
    data_sets: Sequence[Mapping[str, Any]], images: int, *, slack: float = 0.01
) -> list[Mapping[str, Any]]:
    """The shortest prefix of usable data sets holding at least ``images`` (less ``slack``)."""
    picked: list[Mapping[str, Any]] = []
    total = 0
    for data_set in data_sets:
        if data_set["failed"] or not data_set["images"]:
            continue
        picked.append(data_set)
        total += int(data_set["images"])
        if total >= images * (1 - slack):
            return picked
    raise ValueError(f"the catalogue holds {total} usable images, fewer than {images}")


def ideal_seconds(items: int, concurrency: int, latency_s: float) -> float:
    """The physical bound: C requests in flight, each taking the latency L."""
    return math.ceil(items / concurrency) * latency_s


def tile_grid(
    width: int, height: int, tile: int, downsample: int = 0
) -> Iterator[tuple[int, int, int, int, int, int]]:
    """(row, col, left offset, top offset, width, height) of each tile, per ALLEN_API.md §3.

    Offsets are in full-resolution pixels from the image's box; sizes in tier pixels, clipped
    at the right and bottom edges.
    """
    scale = 1 << downsample
    tier_width, tier_height = math.ceil(width / scale), math.ceil(height / scale)
    for row in range(math.ceil(tier_height / tile)):
        for col in range(math.ceil(tier_width / tile)):
            yield (
                row,
                col,
                col * tile * scale,
                row * tile * scale,
                min(tile, tier_width - col * tile),
                min(tile, tier_height - row * tile),
            )


def tile_count(width: int, height: int, tile: int, downsample: int = 0) -> int:
    scale = 1 << downsample
    return math.ceil(math.ceil(width / scale) / tile) * math.ceil(math.ceil(height / scale) / tile)


def ratio(value: float, reference: float) -> float:
    """value / reference, NaN when the reference is not positive (shown as n/a)."""
    return value / reference if reference > 0 else math.nan
