"""The store stage: fetched parts committed in batches, then their outcomes to the recorder.

One task takes the fetched bodies that arrive together (up to ``BATCH_FILES`` files or
``BATCH_BYTES``, within ``LINGER``), asks the store to make the batch durable and visible in one go
(``Store.commit``), and only then passes each item's outcome on. Nothing is reported done before
its file is in place; the bounded stream in front of this stage slows the fetch tasks down when
the disk is the bottleneck.
"""

from __future__ import annotations

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from crawler.fetch import Fetched, Received, failed
from crawler.manifest import Status
from crawler.manifest.repository import Outcome
from crawler.store import Store, StoredFile
from crawler.streams import each, put, take

BATCH_FILES = 64
BATCH_BYTES = 32 * 1024 * 1024
# A batch waits this long for company: the fetch tasks do not wait for it, and every batch
# costs a thread hand-over and a flush (docs/BENCHMARKS.md, section 2).
LINGER = 0.02


async def _gather_more(
    first: Received, receive: MemoryObjectReceiveStream[Received]
) -> list[Received]:
    """``first`` and what arrives within ``LINGER``, up to the batch limits."""
    batch = [first]
    size = first.part.size if isinstance(first, Fetched) else 0
    with anyio.move_on_after(LINGER):
        while len(batch) < BATCH_FILES and size < BATCH_BYTES:
            try:
                more = await take(receive)
            except anyio.EndOfStream:
                break
            batch.append(more)
            size += more.part.size if isinstance(more, Fetched) else 0
    return batch


def outcome_of(fetched: Fetched, stored: StoredFile) -> Outcome:
    return Outcome(
        id=fetched.item.id,
        status=Status.DONE,
        url=fetched.url,
        attempts=fetched.attempts,
        http_status=fetched.http_status,
        size=stored.size,
        sha256=stored.sha256,
    )


async def store_stage(
    store: Store,
    receive: MemoryObjectReceiveStream[Received],
    send: MemoryObjectSendStream[Outcome],
) -> None:
    """Commit until the fetch stage ends; a full disk raises and stops the run."""
    async with receive, send:
        async for first in each(receive):
            batch = await _gather_more(first, receive)
            fetched = [entry for entry in batch if isinstance(entry, Fetched)]
            results = iter(await store.commit([entry.part for entry in fetched]))
            for entry in batch:
                if isinstance(entry, Outcome):
                    await put(send, entry)
                    continue
                result = next(results)
                if isinstance(result, StoredFile):
                    await put(send, outcome_of(entry, result))
                else:
                    await put(send, failed(entry.item, entry.url, result, entry.attempts))
