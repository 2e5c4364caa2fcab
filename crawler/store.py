"""Where mirrored files live: the ``Store`` interface and the part that carries one body.

A file's life, whatever the backend:

    async with store.part(path) as part:    # one download attempt streams into the part:
        await part.write(chunk) ...          #   hashed and sized as it arrives
        check(part.head, part.tail, ...)     # validated by the caller; an error discards it
    [stored, ...] = await store.commit([part, ...])   # durable, then visible under ``path``

A part never appears under its final name before ``commit`` made it durable, and the manifest is
told only after ``commit`` returned, so an interrupted run leaves either a whole file or none.
The local filesystem (``crawler.localstore``) is one implementation; an S3-compatible bucket
(``crawler.objectstore``) is another; ``crawler.output`` opens the one OUT names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from crawler.errors import StorageError

EDGE = 16  # bytes of a body's head and tail kept for format checks (JPEG, zip, NRRD markers)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What the manifest records of a stored file."""

    size: int
    sha256: str


class Part:
    """A body being received: sized, its head and tail kept. Backends store and hash the bytes
    (off the event loop: hashing a few hundred kB per image there would slow every download)."""

    def __init__(self, path: str) -> None:
        self.path = path  # relative to the store's root, '/'-separated
        self.size = 0
        self.head = b""
        self.tail = b""
        self._hash = hashlib.sha256()

    def _account(self, chunk: bytes) -> None:
        """Measure ``chunk``; the subclass keeps or writes its bytes (and ``_digest``s them)."""
        self.size += len(chunk)
        if len(self.head) < EDGE:
            self.head = (self.head + chunk[:EDGE])[:EDGE]
        self.tail = (self.tail + chunk[-EDGE:])[-EDGE:]

    def _digest(self, data: bytes | memoryview) -> None:
        """Hash the next stretch of the body, in the order received."""
        self._hash.update(data)

    def stored(self) -> StoredFile:
        return StoredFile(size=self.size, sha256=self._hash.hexdigest())

    async def write(self, chunk: bytes) -> None:
        """Take the next chunk of the body."""
        raise NotImplementedError


CommitResult = StoredFile | StorageError


class Store(Protocol):
    """A mirror's files: written through parts, committed in batches, checked on resume."""

    def part(self, path: str) -> AbstractAsyncContextManager[Part]:
        """A new part for ``path``; leaving the block with an error discards what it received."""
        ...

    async def commit(self, parts: Sequence[Part]) -> list[CommitResult]:
        """Make each part durable and visible under its path; a result (or error) per part.

        A per-file problem (a directory in the way) is that file's StorageError; a problem that
        would fail every file (a full disk) raises.
        """
        ...

    async def discard(self, parts: Sequence[Part]) -> None:
        """Drop parts that will not be committed (a stopping run)."""
        ...

    async def put(self, path: str, data: bytes) -> None:
        """Store a small file whole and at once (dataset.json, index.json, a report)."""
        ...

    async def put_many(self, files: Sequence[tuple[str, bytes]]) -> list[StorageError | None]:
        """Store several small files whole (a product's ``dataset.json`` files), made durable
        together where the backend can; an error (or None) per file. A full disk raises."""
        ...

    async def sizes(self, paths: Sequence[str]) -> list[int | None]:
        """The stored size of each path, None where there is no file: the resume check."""
        ...

    async def heads(self, paths: Sequence[str], size: int) -> list[bytes | None]:
        """The first ``size`` bytes of each stored file, None where there is none (the stamps
        at the head of ``dataset.json``, crawler/stamps.py)."""
        ...

    async def delete(self, paths: Sequence[str]) -> int:
        """Delete stored files (``sync --prune``); returns how many existed."""
        ...

    async def clock(self) -> float:
        """Now, by the clock that stamps the store's files (a network filesystem's server)."""
        ...

    async def sweep(self, older_than: float) -> int:
        """Remove parts other processes left behind, changed before ``older_than`` by the
        store's clock; never this process's own. Returns how many."""
        ...
