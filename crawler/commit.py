"""Group commit: finished bodies are written, fsynced and renamed in batches by a few threads.

One thread hop per file (anyio's pool, a thread per concurrent download) cost more than the
downloads: every hop is a wake-up and a GIL hand-over, and 32 threads contending for the GIL
spent more system time in futex calls than the run spent on I/O. Here a body that arrived
whole and passed its checks is queued; a few long-lived threads take everything queued at once,
store each file (write, fsync, rename, in that order, as before) and wake the event loop once
per batch. A download still returns only after its own file is in place, so the manifest is
told last.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Sequence

from crawler.store import PartWriter, StoredFile, storage_error

THREADS = 4  # concurrent batches: fsyncs in flight together share the filesystem's journal


class Committer:
    """Stores finished bodies for one run: ``await commit(writer)`` returns once it is in place.

    Threads start on first use and stop at ``close()``; they are daemons, so an abandoned run
    (a second signal) never waits for them.
    """

    def __init__(self, threads: int = THREADS) -> None:
        self._size = max(1, threads)
        self._queue: queue.SimpleQueue[tuple[PartWriter, asyncio.Future[StoredFile]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None

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
            results = [_store(writer) for writer, _future in batch]
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_deliver, batch, results)
            if stopping:
                return


def _store(writer: PartWriter) -> StoredFile | BaseException:
    """Runs in a commit thread: the file in place, or the error that stopped it."""
    try:
        return writer.store()
    except OSError as exc:
        writer.abandon()
        return storage_error(exc, writer.dest)
    except BaseException as exc:  # a bug: surfaced to the caller, never lost in the thread
        writer.abandon()
        return exc


def _deliver(
    batch: Sequence[tuple[PartWriter, asyncio.Future[StoredFile]]],
    results: Sequence[StoredFile | BaseException],
) -> None:
    """On the event loop: hand each caller its result (a cancelled caller has gone)."""
    for (_writer, future), result in zip(batch, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
