"""Group commit: finished bodies are written, flushed in batches, then renamed into place.

The rule never changes: a file gets its final name only after its bytes are on stable storage,
and the caller records it done only after that. What changes is who does the work, because on a
fast local disk the costly part of storing a small file is not the disk but the threads:

- One thread hop per file (anyio's pool, a thread per concurrent download) cost more than the
  downloads: every hop is a wake-up and a GIL hand-over. And one fsync per file is one journal
  commit per file. So files are flushed in batches: one ``syncfs`` per filesystem on Linux (or
  an fsync per file), while the next batch gathers.
- ``LoopCommitter`` (local disks): the event loop writes each small body and renames it, as a
  plain download loop would, and one thread only flushes. Per batch that is one hand-over, not
  several per file; creating and renaming a small file on a local disk takes microseconds.
- ``ThreadCommitter`` (network filesystems, where opening, closing or renaming a file is a round
  trip to a server, and anywhere we cannot tell): two threads take every finished file queued,
  write them, flush the batch, rename each, and wake the event loop once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from crawler.disks import is_local_disk
from crawler.store import PartWriter, StoredFile, storage_error

THREADS = 2  # one can flush while the other writes and renames (they share directory locks)
GROUP_MIN = 2  # a batch this size or larger is flushed with one syncfs per filesystem
# Bodies up to this size are written (and hashed) on the event loop, local disks only: tiles and
# most downsampled images, at a fraction of a millisecond each. Larger ones are written by the
# flushing thread, just before it flushes them, so a fast link's big images never hold the loop.
INLINE_BYTES = 256 * 1024
# A batch waits for company: it goes to the flushing thread once it holds BATCH_FILES files or
# BATCH_BYTES of bodies, or once its first file has waited LINGER seconds. Each hand-over wakes
# a thread and trades the GIL a few times (context switches, the largest cost of a small file
# after the request itself), and each syncfs walks the filesystem's inodes; a batch that flushes
# the moment the previous one returns holds a handful of files on a fast disk.
LINGER = 0.02
BATCH_FILES = 64
BATCH_BYTES = 32 * 1024 * 1024

Result = StoredFile | BaseException
Waiter = tuple[PartWriter, "asyncio.Future[StoredFile]"]


def _load_syncfs() -> Callable[[int], None] | None:
    """Linux's syncfs(2) through ctypes (the os module lacks it); None where it is missing."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if function(fd) != 0:  # ctypes releases the GIL for the call
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))

    return syncfs


SYNCFS = _load_syncfs()


class Committer(Protocol):
    """Stores finished bodies for one run."""

    async def commit(self, writer: PartWriter) -> StoredFile:
        """Store ``writer``'s body under its final name; raises StorageError on a disk problem.

        From here on the committer owns the writer: a cancelled caller leaves it to finish (the
        file lands, unrecorded, and is fetched again next run), never half-written.
        """
        ...

    def close(self) -> None:
        """Let the threads end once their work is done (callers have their results by now)."""
        ...


def make_committer(out: Path, *, group_sync: bool = True) -> Committer:
    """The committer for files under ``out``: writes on the event loop only on a local disk.

    ``group_sync`` off means one fsync per file even where syncfs exists: syncfs also flushes
    whatever else is dirty on that filesystem, which can be slow on a disk shared with heavy
    writers.
    """
    if is_local_disk(out):
        return LoopCommitter(group_sync=group_sync)
    return ThreadCommitter(group_sync=group_sync)


class _Flusher:
    """Makes a batch of written files durable: syncfs per filesystem, or fsync per file."""

    def __init__(self, group_sync: bool) -> None:
        self._syncfs = SYNCFS if group_sync else None
        self._devices: dict[str, int] = {}  # directory -> st_dev, so files group by filesystem

    def flush(self, writers: Sequence[PartWriter], errors: dict[int, BaseException]) -> None:
        """Runs in a thread: flush every writer that wants it and has no error yet; a file that
        cannot be flushed gets its error (and loses its part file)."""
        indexes = [i for i, w in enumerate(writers) if i not in errors and w.wants_sync]
        groups: list[list[int]] = [[index] for index in indexes]
        if self._syncfs is not None and len(indexes) >= GROUP_MIN:
            try:
                by_device: dict[int, list[int]] = {}
                for index in indexes:
                    by_device.setdefault(self._device(writers[index]), []).append(index)
                groups = list(by_device.values())
            except OSError:
                pass  # cannot tell the filesystems apart: flush one by one
        for members in groups:
            if len(members) >= GROUP_MIN and self._syncfs is not None:
                try:
                    self._syncfs(writers[members[0]].fd)
                    continue
                except OSError:
                    pass  # flush one by one below, so each file gets its own verdict
            for index in members:
                if (error := _attempt(writers[index], writers[index].sync)) is not None:
                    errors[index] = error

    def _device(self, writer: PartWriter) -> int:
        directory = os.path.dirname(writer.part_name)
        device = self._devices.get(directory)
        if device is None:
            if len(self._devices) > 10_000:
                self._devices.clear()
            device = self._devices[directory] = os.stat(directory).st_dev
        return device


def _write_unwritten(writers: Sequence[PartWriter], errors: dict[int, BaseException]) -> None:
    """Runs in a thread: write the bodies still buffered."""
    for index, writer in enumerate(writers):
        if not writer.written and (error := _attempt(writer, writer.write_rest)) is not None:
            errors[index] = error


def _finish_all(writers: Sequence[PartWriter], errors: dict[int, BaseException]) -> list[Result]:
    """Rename each flushed file into place; each writer's result or error, in order."""
    results: list[Result] = []
    for index, writer in enumerate(writers):
        if index in errors:
            results.append(errors[index])
            continue
        try:
            results.append(writer.finish())
        except Exception as exc:
            results.append(_failure(writer, exc))
    return results


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    """Hand a batch back to the event loop; a loop already closed (an abandoned run) has nobody
    left to tell, and the unrenamed part files are swept by the next run."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


class LoopCommitter:
    """Local disks: the event loop writes small bodies and renames them; one thread flushes.

    While one batch is being flushed the next gathers; it goes out once the flush is done and it
    is full or its first file has waited ``linger`` seconds, so a quiet run's file waits at most
    that long and a busy run's batches grow with the load.
    """

    def __init__(self, *, group_sync: bool = True, linger: float = LINGER) -> None:
        self._flusher = _Flusher(group_sync)
        self._queue: queue.SimpleQueue[list[Waiter] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._linger = linger
        self._gathering: list[Waiter] = []
        self._gathered_bytes = 0  # bodies of the gathering batch still in memory
        self._oldest = 0.0  # loop time the gathering batch's first file arrived
        self._timer: asyncio.TimerHandle | None = None
        self._flushing = False

    async def commit(self, writer: PartWriter) -> StoredFile:
        loop = self._loop or self._start()
        writer.handed_off = True
        if writer.buffered <= INLINE_BYTES and (error := _attempt(writer, writer.write_rest)):
            raise error
        future: asyncio.Future[StoredFile] = loop.create_future()
        if not self._gathering:
            self._oldest = loop.time()
        self._gathering.append((writer, future))
        self._gathered_bytes += writer.buffered
        self._consider()
        return await future

    def _consider(self) -> None:
        """Send the gathering batch if no flush is running and it is full or has waited long
        enough; otherwise make sure a timer looks again when its first file has lingered."""
        if self._flushing or not self._gathering:
            return
        assert self._loop is not None
        wait = self._oldest + self._linger - self._loop.time()
        if wait <= 0 or len(self._gathering) >= BATCH_FILES or self._gathered_bytes >= BATCH_BYTES:
            self._send()
        elif self._timer is None:
            self._timer = self._loop.call_later(wait, self._lingered)

    def _lingered(self) -> None:
        self._timer = None
        self._consider()

    def _start(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve, name="allen-mirror-flush", daemon=True)
        self._thread.start()
        return self._loop

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._gathering = self._gathering, []
        self._gathered_bytes = 0
        self._flushing = True
        self._queue.put(batch)

    def _serve(self) -> None:
        while (batch := self._queue.get()) is not None:
            writers = [writer for writer, _future in batch]
            errors: dict[int, BaseException] = {}
            _write_unwritten(writers, errors)
            self._flusher.flush(writers, errors)
            assert self._loop is not None
            _post(self._loop, self._flushed, batch, errors)

    def _flushed(self, batch: list[Waiter], errors: dict[int, BaseException]) -> None:
        """On the event loop: rename the flushed files, answer their callers, send the next."""
        self._flushing = False
        _deliver(batch, _finish_all([writer for writer, _future in batch], errors))
        self._consider()

    def close(self) -> None:
        if self._gathering:
            self._send()  # what cancelled callers left behind still lands
        if self._thread is not None:
            self._queue.put(None)
            self._thread = None


class ThreadCommitter:
    """Network filesystems (and wherever we cannot tell): threads do all the file work.

    Threads start on first use and stop at ``close()``; they are daemons, so an abandoned run
    (a second signal) never waits for them.
    """

    def __init__(self, threads: int = THREADS, *, group_sync: bool = True) -> None:
        self._size = max(1, threads)
        self._flusher = _Flusher(group_sync)
        self._queue: queue.SimpleQueue[Waiter | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def commit(self, writer: PartWriter) -> StoredFile:
        loop = self._loop or self._start()
        future: asyncio.Future[StoredFile] = loop.create_future()
        writer.handed_off = True
        self._queue.put((writer, future))
        return await future

    def _start(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        for number in range(self._size):
            thread = threading.Thread(
                target=self._serve, name=f"allen-mirror-commit-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self._loop

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        self._threads = []

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while True:  # everything queued now joins this batch
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            writers = [writer for writer, _future in batch]
            errors: dict[int, BaseException] = {}
            _write_unwritten(writers, errors)
            self._flusher.flush(writers, errors)
            results = _finish_all(writers, errors)
            assert self._loop is not None
            _post(self._loop, _deliver, batch, results)
            if stopping:
                return


def _failure(writer: PartWriter, exc: Exception) -> BaseException:
    """Remove the partial file and say why: a disk problem in one line, or a bug as it is."""
    writer.abandon()
    return storage_error(exc, writer.dest) if isinstance(exc, OSError) else exc


def _attempt(writer: PartWriter, step: Callable[[], object]) -> BaseException | None:
    """One step of storing a file; its failure, already cleaned up, or None."""
    try:
        step()
    except Exception as exc:  # a bug too is surfaced to the caller, never lost in a thread
        return _failure(writer, exc)
    return None


def _deliver(batch: Sequence[Waiter], results: Sequence[Result]) -> None:
    """On the event loop: hand each caller its result (a cancelled caller has gone)."""
    for (_writer, future), result in zip(batch, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
