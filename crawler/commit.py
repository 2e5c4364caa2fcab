"""Group commit: finished bodies are written, flushed and renamed in batches by two threads.

One thread hop per file (anyio's pool, a thread per concurrent download) cost more than the
downloads: every hop is a wake-up and a GIL hand-over, and 32 threads contending for the GIL
spent more system time in futex calls than the run spent on I/O. And one fsync per file is one
journal commit per file: on the ext4 disks we measured, that alone cost as much CPU as a whole
minimal download loop. So a body that arrived whole and passed its checks is queued; a commit
thread takes everything queued at once, writes each file, makes the batch durable (one
``syncfs`` per filesystem on Linux, or an fsync per file), renames each into place and wakes the
event loop once. The rule is unchanged: a file gets its final name only after its bytes are on
stable storage, and the caller records it done only after that.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence

from crawler.store import PartWriter, StoredFile, storage_error

THREADS = 2  # one can flush while the other writes and renames (they share directory locks)
GROUP_MIN = 2  # a batch this size or larger is flushed with one syncfs per filesystem

Result = StoredFile | BaseException


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


class Committer:
    """Stores finished bodies for one run: ``await commit(writer)`` returns once it is in place.

    Threads start on first use and stop at ``close()``; they are daemons, so an abandoned run
    (a second signal) never waits for them. ``group_sync`` off means one fsync per file even
    where syncfs exists: syncfs also flushes whatever else is dirty on that filesystem, which
    can be slow on a disk shared with heavy writers.
    """

    def __init__(self, threads: int = THREADS, *, group_sync: bool = True) -> None:
        self._size = max(1, threads)
        self._syncfs = SYNCFS if group_sync else None
        self._queue: queue.SimpleQueue[tuple[PartWriter, asyncio.Future[StoredFile]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._devices: dict[str, int] = {}  # directory -> st_dev, so files group by filesystem

    async def commit(self, writer: PartWriter) -> StoredFile:
        """Store ``writer``'s body under its final name; raises StorageError on a disk problem.

        From here on the committer owns the writer: a cancelled caller leaves it to finish (the
        file lands, unrecorded, and is fetched again next run), never half-written.
        """
        loop = asyncio.get_running_loop()
        if not self._threads:
            self._start(loop)
        future: asyncio.Future[StoredFile] = loop.create_future()
        writer.handed_off = True
        self._queue.put((writer, future))
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for number in range(self._size):
            thread = threading.Thread(
                target=self._serve, name=f"allen-mirror-commit-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Let the threads end once the queue is empty (callers have their results by now)."""
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
            results = self._store_batch([writer for writer, _future in batch])
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_deliver, batch, results)
            if stopping:
                return

    def _store_batch(self, writers: Sequence[PartWriter]) -> list[Result]:
        """Runs in a commit thread: write every file, make them durable, rename each."""
        errors: dict[int, BaseException] = {}
        for index, writer in enumerate(writers):
            if (error := _attempt(writer, writer.write_rest)) is not None:
                errors[index] = error
        wanted = [i for i, writer in enumerate(writers) if i not in errors and writer.wants_sync]
        self._sync(wanted, writers, errors)
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

    def _sync(
        self, indexes: list[int], writers: Sequence[PartWriter], errors: dict[int, BaseException]
    ) -> None:
        """Flush the files at ``indexes``; a file that cannot be flushed gets its error."""
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
        directory = str(writer.part.parent)
        device = self._devices.get(directory)
        if device is None:
            if len(self._devices) > 10_000:
                self._devices.clear()
            device = self._devices[directory] = os.stat(directory).st_dev
        return device


def _failure(writer: PartWriter, exc: Exception) -> BaseException:
    """Remove the partial file and say why: a disk problem in one line, or a bug as it is."""
    writer.abandon()
    return storage_error(exc, writer.dest) if isinstance(exc, OSError) else exc


def _attempt(writer: PartWriter, step: Callable[[], object]) -> BaseException | None:
    """One step of storing a file; its failure, already cleaned up, or None."""
    try:
        step()
    except Exception as exc:  # a bug too is surfaced to the caller, never lost in the thread
        return _failure(writer, exc)
    return None


def _deliver(
    batch: Sequence[tuple[PartWriter, asyncio.Future[StoredFile]]], results: Sequence[Result]
) -> None:
    """On the event loop: hand each caller its result (a cancelled caller has gone)."""
    for (_writer, future), result in zip(batch, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
