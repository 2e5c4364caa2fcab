"""Experiment extras that come from RMA rather than a download URL: structure unionizes.

The rows are fetched page by page under the same paging rules as seeding, rendered as JSON or
CSV by pure functions, and stored like any download (crawler/fetch.py).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from crawler import seed
from crawler.client import ApiClient
from crawler.plan import unionize_stages


def unionizes_json(rows: Sequence[dict[str, Any]]) -> bytes:
    """The rows as a JSON array in id order, one object per row (stable bytes)."""
    ordered = sorted(rows, key=lambda r: int(r.get("id") or 0))
    return (json.dumps(ordered, indent=1, sort_keys=True) + "\n").encode()


def unionizes_csv(rows: Sequence[dict[str, Any]]) -> bytes:
    """The rows as CSV in id order: ``id`` first, then every other field in name order."""
    ordered = sorted(rows, key=lambda r: int(r.get("id") or 0))
    names = sorted({name for row in ordered for name in row} - {"id"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["id", *names], lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in ordered:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue().encode()


def _cell(value: Any) -> Any:
    """Nested values (there should be none) stay readable as JSON; booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else value


async def unionizes_body(client: ApiClient, data_set_id: int, path: str) -> bytes:
    """Every ProjectionStructureUnionize row of a data set, as ``path`` wants them: CSV for a
    ``.csv`` path, JSON otherwise. Each page is retried by the client; RemoteError after that."""
    settings = client.settings
    rows = await seed.enumerate_rows(
        client,
        settings.api_base,
        unionize_stages(data_set_id),
        page_size=settings.page_size,
        what="ProjectionStructureUnionize",
    )
    return unionizes_csv(rows) if path.endswith(".csv") else unionizes_json(rows)
