"""Storing a body: buffer while receiving, write to ``<dest>.part``, fsync, then ``os.replace``.

A file appears under its final name only complete and flushed; the manifest is told last.
Large bodies spill to disk from a thread as they arrive; the final write, flush and rename are
the committer's (crawler/commit.py), which keeps them off the event loop where they can block.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import anyio

from crawler.errors import StorageError

PART_SUFFIX = ".part"
# This process's part files carry a token of their own: the sweep of parts that killed runs
# left runs beside the downloads, and a stat-then-unlink by name could otherwise delete a part
# this run re-created under the same name in between (its item is fetched again at once).
RUN_TOKEN = f"{os.getpid():x}{secrets.token_hex(2)}"
OWN_SUFFIX = f".{RUN_TOKEN}{PART_SUFFIX}"
SPILL_BYTES = 4 * 1024 * 1024  # bodies larger than this are written while they arrive


# Not frozen: built per item, and a frozen dataclass's __init__ (object.__setattr__ per field)
# costs about four times a plain one's.
@dataclass(slots=True)
class StoredFile:
    """What the manifest records of a stored file."""

    size: int
    sha256: str


def part_path(dest: Path) -> Path:
    """The temporary name a file has until it is complete (``<name>.<run token>.part``)."""
    return dest.with_name(dest.name + OWN_SUFFIX)


def storage_error(exc: OSError, path: Path) -> StorageError:
    """One clear line for a disk problem."""
    if exc.errno == errno.ENOSPC:
        return StorageError(f"disk full writing {path}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"cannot write {path}: permission denied")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


class PartWriter:
    """Accumulates one body, hashing as it goes, and commits it atomically."""

    def __init__(self, dest: str | Path, *, fsync: bool = True) -> None:
        # Plain strings for the system calls: pathlib's joins and conversions, a few per file,
        # cost more than the calls themselves on a fast disk.
        self.dest_name = os.fspath(dest)
        self.part_name = self.dest_name + OWN_SUFFIX
        self._fsync = fsync
        self._hash = hashlib.sha256()
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._file: int | None = None
        self.size = 0
        self.head = b""
        self.tail = b""
        self.handed_off = False  # a committer owns the file now: discard() leaves it alone

    @property
    def dest(self) -> Path:
        """Where the file ends up (for directories and messages: the hot path uses the name)."""
        return Path(self.dest_name)

    def add(self, chunk: bytes) -> bool:
        """Take a chunk; True when enough is buffered that the caller should ``spill()``.

        Hashing happens with the write, in the worker thread, not here on the event loop.
        """
        if not chunk:
            return False
        if len(self.head) < 16:
            self.head = (self.head + chunk[:16])[:16]
        self.tail = (self.tail + chunk[-16:])[-16:]  # slices: never a copy of the whole chunk
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self.size += len(chunk)
        return self._buffered >= SPILL_BYTES

    def _write_buffer(self) -> None:
        if self._file is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            try:
                self._file = os.open(self.part_name, flags, 0o644)
            except FileNotFoundError:  # first file of its directory: one mkdir, not one per file
                self.dest.parent.mkdir(parents=True, exist_ok=True)
                self._file = os.open(self.part_name, flags, 0o644)
        data = b"".join(self._chunks)
        self._hash.update(data)
        view = memoryview(data)
        while view:
            written = os.write(self._file, view)
            view = view[written:]
        self._chunks.clear()
        self._buffered = 0

    async def spill(self) -> None:
        """Write what is buffered so a large body never sits whole in memory."""
        try:
            await anyio.to_thread.run_sync(self._write_buffer)
        except OSError as exc:
            raise storage_error(exc, self.part) from exc

    @property
    def part(self) -> Path:
        """The temporary file the body is written to."""
        return Path(self.part_name)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet written to the part file."""
        return self._buffered

    @property
    def written(self) -> bool:
        """Whether the whole body is in the (still open) part file."""
        return self._file is not None and not self._chunks

    @property
    def wants_sync(self) -> bool:
        """Whether this file must reach stable storage before it is renamed into place."""
        return self._fsync

    def write_rest(self) -> None:
        """Blocking: write what is still buffered (the part file stays open for ``sync``)."""
        self._write_buffer()

    @property
    def fd(self) -> int:
        """The open descriptor of the part file (after ``write_rest``)."""
        assert self._file is not None
        return self._file

    def sync(self) -> None:
        """Blocking: fsync this one file."""
        assert self._file is not None
        os.fsync(self._file)

    def finish(self) -> StoredFile:
        """Blocking: close and rename into place; only once the body is synced (or need not be)."""
        assert self._file is not None
        try:
            os.close(self._file)
        finally:
            self._file = None
        os.replace(self.part_name, self.dest_name)
        return StoredFile(size=self.size, sha256=self._hash.hexdigest())

    def abandon(self) -> None:
        """Blocking: close and remove the partial file (a stale .part is swept next run)."""
        self._chunks.clear()
        with contextlib.suppress(OSError):
            self._discard()

    def _discard(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part_name)

    async def discard(self) -> None:
        """Drop the partial file; shielded so a cancelled download still cleans up."""
        if self.handed_off:
            return  # the committer finishes or removes it
        self._chunks.clear()
        if self._file is None:
            return  # nothing reached the disk yet
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(OSError):  # a stale .part is swept by the next run
                await anyio.to_thread.run_sync(self._discard)


def write_atomic(dest: Path, data: bytes, *, fsync: bool = True) -> None:
    """Blocking atomic write of a small file (metadata such as dataset.json)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    try:
        with part.open("wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(part, dest)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise storage_error(exc, dest) from exc


def filesystem_now(root: Path) -> float:
    """The current time by the clock that stamps files under ``root``: the mtime of a marker file
    created and removed at once. On a network filesystem the server sets modification times,
    so comparing them with this host's clock would be off by the two clocks' skew."""
    marker = root / f".allen-mirror-clock{OWN_SUFFIX}"
    root.mkdir(parents=True, exist_ok=True)
    try:
        marker.touch()
        return marker.stat().st_mtime
    finally:
        marker.unlink(missing_ok=True)


def sweep_parts(root: Path, older_than: float) -> int:
    """Remove ``.part`` files other processes left, modified before ``older_than``.

    Callers pass a moment after which no other live process can have started one: this run's
    start (a mirror alone on its manifest), or the moment a shared manifest was seen drained.
    This process's own parts are never touched, whatever their age.
    """
    removed = 0
    if not root.is_dir():
        return 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(PART_SUFFIX) and not name.endswith(OWN_SUFFIX):
                path = Path(directory, name)
                try:
                    if path.stat().st_mtime < older_than:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
    return removed
