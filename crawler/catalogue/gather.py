"""One streaming pass over the manifest: tallies per mirror directory, rows spilled to disk.

The manifest is read in id order, a chunk at a time; each row is counted into its directory's
``Census`` (counts, bytes, last fetch, and a digest of every row that decides what the page
shows) and appended to that directory's spill file. Pages are then made one directory at a
time from its spill file, and only for directories whose digest changed, so memory stays that
of one data set whatever the mirror's size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from crawler.catalogue.model import Row, directory_of
from crawler.manifest import Manifest

SPILL_LINES = 20_000  # rows buffered before they are appended to the spill files


@dataclass(slots=True)
class Census:
    """What the manifest says of one directory, without keeping its rows."""

    directory: str
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    last_synced: str | None = None
    _digest: Any = field(default_factory=hashlib.sha256)

    def add(self, row: Row, line: str) -> None:
        _, _, status, size, _, _, fetched = row
        self.counts[status] = self.counts.get(status, 0) + 1
        if status == "done":
            self.bytes += size or 0
        if fetched and (self.last_synced is None or fetched > self.last_synced):
            self.last_synced = fetched
        self._digest.update(line.encode())

    @property
    def digest(self) -> str:
        """A hash of every row of the directory, in id order."""
        return str(self._digest.hexdigest())


class Spill:
    """Rows per directory in files under a work directory, appended in batches."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: dict[str, str] = {}  # directory -> spill file name (never the raw name)
        self._buffer: dict[str, list[str]] = {}
        self._buffered = 0

    def add(self, directory: str, line: str) -> bool:
        """Buffer a row; True when the buffer should be flushed."""
        self.names.setdefault(directory, f"{len(self.names)}.jsonl")
        self._buffer.setdefault(directory, []).append(line)
        self._buffered += 1
        return self._buffered >= SPILL_LINES

    def flush(self) -> None:
        for directory, lines in self._buffer.items():
            with (self.root / self.names[directory]).open("a", encoding="utf-8") as handle:
                handle.writelines(lines)
        self._buffer, self._buffered = {}, 0

    def rows(self, directory: str) -> Iterator[Row]:
        """The directory's rows, in manifest order."""
        name = self.names.get(directory)
        if name is None:
            return
        with (self.root / name).open(encoding="utf-8") as handle:
            for line in handle:
                path, kind, status, size, sha256, error, fetched = json.loads(line)
                yield path, kind, status, size, sha256, error, fetched


def as_row(item: dict[str, Any]) -> Row:
    """A manifest row as the catalogue keeps it."""
    fetched = item.get("fetched_at")
    if isinstance(fetched, datetime):
        fetched = fetched.strftime("%Y-%m-%d %H:%M:%S")
    return (
        str(item["path"]),
        str(item["kind"]),
        str(item["status"]),
        item.get("size"),
        item.get("sha256"),
        item.get("error"),
        fetched,
    )


async def gather(manifest: Manifest, spill: Spill) -> dict[str, Census]:
    """Stream every item of the manifest into censuses and the spill files."""
    census: dict[str, Census] = {}
    async for item in manifest.rows():
        row = as_row(item)
        line = json.dumps(row, separators=(",", ":")) + "\n"
        directory = directory_of(row[0])
        entry = census.get(directory)
        if entry is None:
            entry = census[directory] = Census(directory)
        entry.add(row, line)
        if spill.add(directory, line):
            await anyio.to_thread.run_sync(spill.flush)
    await anyio.to_thread.run_sync(spill.flush)
    return census
