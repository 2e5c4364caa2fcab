"""``ls`` and ``status``: read the manifest and present it, for people or for programs."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import make_url

from crawler.errors import ManifestError, UsageError
from crawler.manifest import Manifest, Status, open_manifest, workers
from crawler.manifest.database import is_sqlite
from crawler.manifest.repository import Tally
from crawler.retry import utcnow

RATE_WINDOW = 60  # seconds of done items the live rate of ``status`` is measured over

LS_FIELDS = (
    "url",
    "path",
    "status",
    "size",
    "sha256",
    "data_set_id",
    "image_id",
    "kind",
    "attempts",
    "http_status",
    "error",
    "fetched_at",
    "claimed_by",
)


def check_status(status: str | None) -> str | None:
    """``--status`` must name a known status."""
    allowed = [s.value for s in Status]
    if status is not None and status not in allowed:
        raise UsageError(f"unknown status {status!r}: expected one of {', '.join(allowed)}")
    return status


def check_manifest_exists(manifest_url: str) -> None:
    """Reading commands never create a SQLite manifest as a side effect."""
    if is_sqlite(manifest_url):
        database = make_url(manifest_url).database
        if database and not Path(database).exists():
            raise UsageError(
                f"no manifest at {database}: run 'allen-mirror mirror' or 'plan' first"
            )


def read_only(manifest_url: str) -> bool:
    """A SQLite manifest this process cannot write (a read-only mount or directory). A missing
    one is not: the caller's own check names it."""
    if not is_sqlite(manifest_url):
        return False
    database = make_url(manifest_url).database
    if not database:
        return False
    path = Path(database)
    return path.exists() and not (os.access(path.parent, os.W_OK) and os.access(path, os.W_OK))


async def open_existing(manifest_url: str) -> Manifest:
    """Open a manifest that must already exist; read-only where it cannot be written (then it
    is neither migrated nor locked, and reading it works as on any other mirror)."""
    check_manifest_exists(manifest_url)
    if read_only(manifest_url):
        return await open_manifest(manifest_url, read_only=True)
    return await open_manifest(manifest_url)


def utc_text(moment: datetime) -> str:
    """A stored timestamp (naive UTC) as people and programs read it: 2026-11-21T15:30:00Z.
    Every time ``ls``, ``status``, ``history`` and the reports show is written this way."""
    return moment.isoformat(timespec="seconds") + "Z"


def _plain(value: Any) -> Any:
    return utc_text(value) if isinstance(value, datetime) else value


async def item_rows(manifest: Manifest, status: str | None) -> AsyncIterator[dict[str, Any]]:
    """The ls view of each item."""
    async for row in manifest.rows(status):
        yield {name: _plain(row.get(name)) for name in LS_FIELDS}


async def write_ls(manifest: Manifest, status: str | None, fmt: str, stream: TextIO) -> int:
    """One JSON object per item, or an aligned table; returns the number of items."""
    count = 0
    if fmt == "table":
        stream.write(f"{'STATUS':<8} {'SIZE':>10} {'ATT':>3}  PATH\n")
    async for row in item_rows(manifest, status):
        count += 1
        if fmt == "jsonl":
            stream.write(json.dumps(row, separators=(",", ":")) + "\n")
        else:
            size = "" if row["size"] is None else str(row["size"])
            error = f"  ({row['error']})" if row["error"] else ""
            stream.write(
                f"{row['status']:<8} {size:>10} {row['attempts']:>3}  {row['path']}{error}\n"
            )
    return count


async def status_document(manifest: Manifest) -> dict[str, Any]:
    """Counts per status and per data set, and bytes of done files; a damaged manifest is an
    error, not a set of plausible counts."""
    await manifest.check_integrity()
    per_data_set = await manifest.tallies_by_data_set()
    unknown = sorted({status for _, status in per_data_set} - {s.value for s in Status})
    if unknown:
        raise ManifestError(
            f"the manifest holds items of unknown status {', '.join(map(repr, unknown))}: "
            "it is damaged or written by a newer allen-mirror"
        )
    totals: dict[str, Tally] = {}
    for (_, status), tally in per_data_set.items():  # one scan serves both views
        seen = totals.get(status, Tally())
        totals[status] = Tally(items=seen.items + tally.items, bytes=seen.bytes + tally.bytes)
    holders = await manifest.holders()
    live = await workers.live(manifest)
    data_sets: dict[str, dict[str, int]] = {}
    for (data_set_id, status), tally in sorted(per_data_set.items(), key=lambda kv: str(kv[0])):
        entry = data_sets.setdefault(str(data_set_id), {s.value: 0 for s in Status} | {"bytes": 0})
        entry[status] = tally.items
        if status == Status.DONE.value:
            entry["bytes"] = tally.bytes
    counts = {s.value: totals.get(s.value, Tally()).items for s in Status}
    now = utcnow()
    recent, oldest = await manifest.done_since(now - timedelta(seconds=RATE_WINDOW))
    return {
        "items": sum(counts.values()),
        "counts": counts,
        "bytes": totals.get(Status.DONE.value, Tally()).bytes,
        "data_sets": data_sets,
        "claims": {
            owner: {"items": n, "lease_until": _plain(until)}
            for owner, (n, until) in holders.items()
        },
        "workers": live,
        "recent": live_rate(recent, oldest, now),
    }


def live_rate(recent: Tally, oldest: datetime | None, now: datetime) -> dict[str, Any]:
    """Items and bytes per second over the items done within the last ``RATE_WINDOW`` seconds:
    measured from the oldest of them (a run that began 10 s ago is not averaged over a minute),
    over at least a second, so one batch recorded at once does not read as a burst."""
    if not recent.items or oldest is None:
        return {"window_s": RATE_WINDOW, "items": 0, "items_per_s": 0.0, "bytes_per_s": 0.0}
    span = min(max((now - oldest).total_seconds(), 1.0), RATE_WINDOW)
    return {
        "window_s": RATE_WINDOW,
        "items": recent.items,
        "items_per_s": round(recent.items / span, 2),
        "bytes_per_s": round(recent.bytes / span, 1),
    }


def write_status(
    document: dict[str, Any], stream: TextIO, size: Callable[[int], str], *, where: str = "on disk"
) -> None:
    """The human view of ``status``: sizes through ``size`` (e.g. 3.7 MB), times in UTC;
    ``where`` the done files are ("on disk", "in s3://bucket/prefix")."""
    counts = document["counts"]
    stream.write(
        f"{document['items']} items: "
        + ", ".join(f"{counts[s.value]} {s.value}" for s in Status)
        + f"; {size(document['bytes'])} {where}\n"
    )
    recent = document["recent"]
    if recent["items"]:
        stream.write(
            f"  now: {recent['items_per_s']:.1f} items/s, {size(round(recent['bytes_per_s']))}/s "
            f"({recent['items']} done in the last {recent['window_s']} s)\n"
        )
    for data_set_id, entry in document["data_sets"].items():
        stream.write(
            f"  data set {data_set_id}: "
            + ", ".join(f"{entry[s.value]} {s.value}" for s in Status)
            + f"; {size(entry['bytes'])}\n"
        )
    for entry in document["workers"]:
        beaten = entry["last_seen"] != entry["started_at"]
        rate = f"{entry['rate']:.1f} requests/s" if beaten else "starting"
        stream.write(
            f"  worker {entry['id']} ({entry['command']}, since {entry['started_at']}): "
            f"{rate}, {entry['done']} done, {entry['failed']} failed, "
            f"{size(entry['bytes'])}, last seen {entry['last_seen']}\n"
        )
    for owner, claim in document["claims"].items():
        stream.write(f"  held by {owner}: {claim['items']} items until {claim['lease_until']}\n")
