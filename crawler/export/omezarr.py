"""``--format ome-zarr``: one OME-Zarr (NGFF 0.4, Zarr v2) multiscale image per sample.

``DEST/{split}/{key}.ome.zarr``: axes c, y, x; three channels (RGB) per kind in ``KINDS``
order (section, then projection or expression); level 0 is the tier's pixels, stitched tile by
tile from a tiled mirror (chunks are the tile size, so each tile fills whole chunks and memory
holds one tile), each further level halves the previous one (mean of 2 x 2 pixels) until the
longer side fits ``SMALLEST`` pixels. Scales are in micrometres (µm per tier pixel x 2^level);
the sample's metadata, alignments included, is in the ``allen`` attribute. With ``--labels`` a
``labels/structures`` image (uint32 structure ids, halved by nearest neighbour) is added.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from crawler.export.files import commit_directory, part_path, remove
from crawler.reader.samples import KINDS, Sample

if TYPE_CHECKING:
    import zarr

    from crawler.export.labels import LabelSource

SMALLEST = 256  # stop halving once the longer side is at most this many pixels
CHUNK = 512  # chunk edge of whole (not tiled) images
STRIP = 256  # rows of a level computed at a time
NGFF_VERSION = "0.4"
_COLOURS = ("FF0000", "00FF00", "0000FF")


def level_shapes(height: int, width: int, smallest: int = SMALLEST) -> list[tuple[int, int]]:
    """(height, width) of every pyramid level: each the previous halved (rounded up)."""
    shapes = [(height, width)]
    while max(shapes[-1]) > smallest:
        h, w = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2)))
    return shapes


def halve(block: NDArray[Any], *, nearest: bool = False) -> NDArray[Any]:
    """A (c, h, w) block at half size: the rounded mean of each 2 x 2 (edges replicated when
    odd), or its top-left pixel for labels, whose ids must not be averaged."""
    if nearest:
        return block[:, ::2, ::2]
    _, h, w = block.shape
    padded = np.pad(block, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge").astype(np.uint16)
    total = padded[:, 0::2, 0::2] + padded[:, 1::2, 0::2] + padded[:, 0::2, 1::2]
    total += padded[:, 1::2, 1::2] + 2
    return (total // 4).astype(block.dtype)


def multiscales(name: str, levels: int, um: float, axes_unit: bool) -> list[dict[str, Any]]:
    """The NGFF 0.4 ``multiscales`` attribute of an image of ``levels`` levels."""
    space: dict[str, Any] = {"type": "space", "unit": "micrometer"} if axes_unit else {}
    return [
        {
            "version": NGFF_VERSION,
            "name": name,
            "axes": [
                {"name": "c", "type": "channel"},
                {"name": "y", **(space or {"type": "space"})},
                {"name": "x", **(space or {"type": "space"})},
            ],
            "datasets": [
                {
                    "path": str(level),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [1.0, um * 2**level, um * 2**level]}
                    ],
                }
                for level in range(levels)
            ],
            "type": "mean",
        }
    ]


def omero(kinds: list[str]) -> dict[str, Any]:
    """Channel names and colours, so viewers (napari) show each kind's RGB."""
    return {
        "channels": [
            {
                "label": f"{kind} {colour}",
                "color": hex_colour,
                "window": {"start": 0, "end": 255, "min": 0, "max": 255},
                "active": kind == kinds[0],
            }
            for kind in kinds
            for colour, hex_colour in zip(("red", "green", "blue"), _COLOURS, strict=True)
        ],
        "rdefs": {"model": "color"},
    }


def _create(
    group: zarr.Group, shapes: list[tuple[int, int]], c: int, chunk: int, dtype: Any
) -> list[Any]:
    return [
        group.create_array(
            str(level),
            shape=(c, h, w),
            chunks=(1, min(chunk, h), min(chunk, w)),
            dtype=dtype,
            fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        for level, (h, w) in enumerate(shapes)
    ]


def _pyramid(arrays: list[Any], *, nearest: bool) -> None:
    """Fill levels 1.. from the one above, a strip of rows at a time."""
    for level in range(1, len(arrays)):
        source, target = arrays[level - 1], arrays[level]
        height = target.shape[1]
        for start in range(0, height, STRIP):
            stop = min(height, start + STRIP)
            target[:, start:stop, :] = halve(source[:, 2 * start : 2 * stop, :], nearest=nearest)


def _fill_level0(array: Any, sample: Sample, kinds: list[str]) -> None:
    height, width = array.shape[1:]
    for index, kind in enumerate(kinds):
        member = sample.members[kind]
        channels = slice(3 * index, 3 * index + 3)
        pieces = member.tiles() if member.tiled else iter([(0, 0, member.pixels())])
        for top, left, pixels in pieces:
            h = max(0, min(pixels.shape[0], height - top))
            w = max(0, min(pixels.shape[1], width - left))
            if h and w:
                array[channels, top : top + h, left : left + w] = pixels[:h, :w].transpose(2, 0, 1)


def write_image(
    sample: Sample, folder: Path, metadata: dict[str, Any], labels: LabelSource | None
) -> int:
    """Write ``folder/{key}.ome.zarr`` (through a hidden part directory); returns its bytes."""
    import zarr

    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{sample.key}.ome.zarr"
    part = part_path(final)
    if part.exists():
        remove(part)
    kinds = [kind for kind in KINDS if kind in sample.members]
    tiled = [m for m in sample.members.values() if m.tiled]
    chunk = CHUNK
    if tiled:
        from crawler.reader.files import TileIndex

        assert tiled[0].index_path is not None
        chunk = TileIndex.read(tiled[0].index_path).tile_size
    shapes = level_shapes(sample.height, sample.width)
    um = sample.um_per_pixel
    try:
        group = zarr.open_group(part, mode="w", zarr_format=2)
        arrays = _create(group, shapes, 3 * len(kinds), chunk, np.uint8)
        _fill_level0(arrays[0], sample, kinds)
        _pyramid(arrays, nearest=False)
        group.attrs.update(
            {
                "multiscales": multiscales(sample.key, len(shapes), um or 1.0, um is not None),
                "omero": omero(kinds),
                "allen": metadata,
            }
        )
        if labels is not None:
            _write_labels(group, sample, shapes, chunk, um, labels)
    except BaseException:
        remove(part)
        raise
    size = sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(part)
        for name in names
    )
    commit_directory(part, final)
    return size


def _write_labels(
    group: Any,
    sample: Sample,
    shapes: list[tuple[int, int]],
    chunk: int,
    um: float | None,
    labels: LabelSource,
) -> None:
    """``labels/structures``: structure ids per pixel (NGFF image-label), strip by strip."""
    folder = group.create_group("labels")
    folder.attrs["labels"] = ["structures"]
    image = folder.create_group("structures")
    arrays = _create(image, shapes, 1, chunk, np.uint32)
    for start in range(0, sample.height, STRIP):
        stop = min(sample.height, start + STRIP)
        arrays[0][0, start:stop, :] = labels.rows(sample, start, stop)
    _pyramid(arrays, nearest=True)
    scales = multiscales("structures", len(shapes), um or 1.0, um is not None)
    image.attrs.update(
        {
            "multiscales": scales,
            "image-label": {"version": NGFF_VERSION, "source": {"image": "../../"}},
        }
    )
