"""Samples as table rows: one explicit Arrow schema for ``index.parquet`` and Parquet shards.

The schema is fixed, not inferred, so every shard of an export has the same one whatever its
first rows hold (a null alignment, no projection image) and loaders concatenate them. Nested
records (alignments, hashes) go in as JSON text: their fields differ between API versions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crawler.reader.samples import KINDS, column

if TYPE_CHECKING:
    import pyarrow as pa

JSON_COLUMNS = ("alignment2d", "alignment3d", "sha256")


def metadata_fields() -> list[pa.Field]:
    """The metadata columns, in ``sample_metadata`` order."""
    import pyarrow as pa

    strings = pa.list_(pa.string())
    return [
        pa.field("key", pa.string(), nullable=False),
        pa.field("data_set_id", pa.int64()),
        pa.field("image_id", pa.int64()),
        pa.field("section_number", pa.int32()),
        pa.field("tier", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("um_per_pixel", pa.float64()),
        pa.field("resolution_um", pa.float64()),
        pa.field("section_thickness_um", pa.float64()),
        pa.field("plane_of_section", pa.string()),
        pa.field("products", pa.list_(pa.int64())),
        pa.field("specimen", pa.string()),
        pa.field("transgenic_lines", strings),
        pa.field("injection_structures", strings),
        pa.field("genes", strings),
        pa.field("colour_window", pa.list_(pa.int32())),
        pa.field("members", strings),
        pa.field("tiled", pa.bool_()),
        *(pa.field(name, pa.string()) for name in JSON_COLUMNS),
    ]


def index_schema() -> pa.Schema:
    """``index.parquet``: key, split, shard, then the metadata."""
    import pyarrow as pa

    fields = metadata_fields()
    return pa.schema(
        [fields[0], pa.field("split", pa.string()), pa.field("shard", pa.int32()), *fields[1:]]
    )


def shard_schema(kinds: tuple[str, ...], labels: bool) -> pa.Schema:
    """Parquet shards: key, the image bytes per kind (``jpg``, ``projection_jpg``, ...), the
    labels as ``.npy`` bytes with ``--labels``, then the metadata: img2dataset's shape."""
    import pyarrow as pa

    fields = metadata_fields()
    images = [pa.field(column(kind), pa.binary()) for kind in KINDS if kind in kinds]
    extra = [pa.field("labels_npy", pa.binary())] if labels else []
    return pa.schema([fields[0], *images, *extra, *fields[1:]])


def metadata_row(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A sample's metadata as column values (nested records as compact, sorted JSON)."""
    row = dict(metadata)
    for name in JSON_COLUMNS:
        value = row.get(name)
        row[name] = None if value is None else json.dumps(value, sort_keys=True)
    return row
