"""The fetch stage: N tasks take items from the work source and download each into a part.

The fetch tasks are the only holders of request slots and rate tokens (through the client).
A task hands what it received to the store stage and takes the next item at once: it never
waits for a disk. Failures after the retry policy gave up become failed outcomes here; a full
disk stops the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from crawler.client import ApiClient
from crawler.errors import (
    ContentError,
    DiskFullError,
    HTTPStatusError,
    RemoteError,
    StorageError,
    TooLargeError,
)
from crawler.kinds import body_producer, body_rule
from crawler.manifest import Status
from crawler.manifest.repository import Claimed, Outcome
from crawler.plan import item_url
from crawler.redact import mask_url
from crawler.retry import GaveUp
from crawler.signals import Stop
from crawler.store import Part, Store
from crawler.streams import each, put

log = structlog.get_logger("crawler.fetch")


@dataclass(slots=True)
class Fetched:
    """A body received whole and checked, waiting for the store to commit it."""

    item: Claimed
    part: Part
    url: str
    http_status: int
    attempts: int


Received = Fetched | Outcome  # an outcome here is a failure, passed on to the recorder


def failed(
    item: Claimed, url: str, error: Exception, attempts: int, status: int | None = None
) -> Outcome:
    log.warning("item.failed", url=url, path=item.path, error=str(error), attempts=attempts)
    return Outcome(
        id=item.id,
        status=Status.FAILED,
        url=url,
        attempts=attempts,
        http_status=status,
        error=str(error),
    )


def answered_status(error: RemoteError) -> int | None:
    """The HTTP status of the answer that failed: its own status, or 200 for a body refused
    after a 200 (wrong content, too large); None when no answer came."""
    if isinstance(error, HTTPStatusError):
        return error.status
    if isinstance(error, ContentError | TooLargeError):
        return 200
    return None


async def fetch_item(client: ApiClient, store: Store, item: Claimed) -> Received:
    """Download one item into a part (retried as the policy says), or say why it failed.

    ``url`` is what is asked; ``shown``, without any password, is what is logged and recorded.
    """
    url = item_url(client.settings.api_base, item.ref)
    shown = mask_url(url)
    try:
        if (produce := body_producer(item.kind)) is not None:  # unionizes, structure graph
            body = await produce(client, item)
            async with store.part(item.path) as part:
                await part.write(body)
            return Fetched(item, part, shown, 200, 1)
        rule = body_rule(item.kind)
        limit = rule.limit(client.settings.max_item_bytes)

        async def attempt() -> tuple[Part, int]:
            async with store.part(item.path) as part:  # a failed attempt discards its part
                walk = rule.stream_check(shown)
                status = await client.stream_into(
                    url, part, image=rule.image, limit=limit, inspect=walk.feed
                )
                walk.finish()
                rule.check(part, shown)
            return part, status

        (part, status), attempts = await client.retrying(attempt, url)
        return Fetched(item, part, shown, status, attempts)
    except GaveUp as gave_up:
        return failed(item, shown, gave_up.error, gave_up.attempts, answered_status(gave_up.error))
    except RemoteError as error:
        return failed(item, shown, error, 1, answered_status(error))
    except DiskFullError:
        raise
    except StorageError as error:  # this file cannot be written; the others can
        return failed(item, shown, error, 1)


async def fetch_stage(
    client: ApiClient,
    store: Store,
    receive: MemoryObjectReceiveStream[Claimed],
    send: MemoryObjectSendStream[Received],
    *,
    tasks: int,
    stop: Stop,
) -> None:
    """Run ``tasks`` fetch tasks until the source ends or the stop's grace runs out."""

    async def fetcher(
        items: MemoryObjectReceiveStream[Claimed], results: MemoryObjectSendStream[Received]
    ) -> None:
        async with items, results:
            async for item in each(items):
                if stop.requested:
                    return  # its claim is released at the end of the run
                await put(results, await fetch_item(client, store, item))

    async with receive, send:
        with stop.scope():
            async with anyio.create_task_group() as group:
                for _ in range(tasks):
                    group.start_soon(fetcher, receive.clone(), send.clone())
