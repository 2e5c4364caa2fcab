"""Fetching: one task group, a bounded stream of claimed items, N workers, one batching recorder.

The claimer takes items from the manifest under a lease; workers download them through the
shared client (which enforces concurrency, rate and retries); the recorder commits outcomes
in batches so the manifest is never the bottleneck. Backpressure comes from the bounded buffers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import anyio
import structlog
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from crawler.client import ApiClient, DownloadFailed
from crawler.config import Settings
from crawler.manifest import Manifest, Status
from crawler.manifest.repository import Claimed, Outcome

log = structlog.get_logger("crawler.fetch")

LEASE = timedelta(minutes=10)


@dataclass
class FetchStats:
    """What the pool did; read by the progress bar and the summary."""

    done: int = 0
    failed: int = 0
    bytes: int = 0
    failures: list[Outcome] = field(default_factory=list)


@dataclass
class Stop:
    """Shared stop flag: set by the first signal, checked before taking new work."""

    event: anyio.Event = field(default_factory=anyio.Event)
    signal: int | None = None

    @property
    def requested(self) -> bool:
        return self.event.is_set()


OnOutcome = Callable[[Outcome], None]


class Pool:
    """Drains the manifest's pending items for one owner."""

    def __init__(
        self,
        settings: Settings,
        manifest: Manifest,
        client: ApiClient,
        owner: str,
        *,
        stop: Stop,
        planning_done: anyio.Event,
        on_outcome: OnOutcome | None = None,
    ) -> None:
        self.settings = settings
        self.manifest = manifest
        self.client = client
        self.owner = owner
        self.stop = stop
        self.planning_done = planning_done
        self.on_outcome = on_outcome
        self.stats = FetchStats()
        self.batch = max(16, settings.concurrency * 4)
        self.planned = anyio.Event()  # poked by the planner when new items land

    def poke(self) -> None:
        """New items were planned: wake an idle claimer."""
        self.planned.set()

    async def run(self) -> FetchStats:
        """Fetch until nothing is pending (or a stop), then release what was not attempted."""
        claimed_send, claimed_receive = anyio.create_memory_object_stream[Claimed](self.batch)
        outcome_send, outcome_receive = anyio.create_memory_object_stream[Outcome](self.batch)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._renew_leases)
                async with anyio.create_task_group() as work:
                    work.start_soon(self._claim, claimed_send)
                    async with claimed_receive, outcome_send:
                        for _ in range(self.settings.concurrency):
                            work.start_soon(
                                self._work, claimed_receive.clone(), outcome_send.clone()
                            )
                    work.start_soon(self._record, outcome_receive)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.manifest.release(self.owner)
        return self.stats

    async def _renew_leases(self) -> None:
        interval = LEASE.total_seconds() / 3
        while True:
            await anyio.sleep(interval)
            await self.manifest.renew(self.owner, LEASE)

    async def _claim(self, send: ObjectSendStream[Claimed]) -> None:
        async with send:
            while not self.stop.requested:
                self.planned = anyio.Event()
                batch = await self.manifest.claim(self.owner, self.batch, LEASE)
                if not batch:
                    if self.planning_done.is_set():
                        # Planning may have finished between our claim and this check.
                        batch = await self.manifest.claim(self.owner, self.batch, LEASE)
                        if not batch:
                            return
                    else:
                        with anyio.move_on_after(1.0):
                            await self.planned.wait()
                        continue
                for item in batch:
                    if self.stop.requested:
                        return
                    try:
                        await send.send(item)
                    except anyio.BrokenResourceError:
                        return  # every worker has stopped

    async def _work(
        self, receive: ObjectReceiveStream[Claimed], send: ObjectSendStream[Outcome]
    ) -> None:
        async with receive, send:
            async for item in receive:
                if self.stop.requested:
                    return
                await send.send(await self._fetch(item))

    async def _fetch(self, item: Claimed) -> Outcome:
        url = self.client.settings.api_base + item.ref
        dest = self.settings.out / Path(item.path)
        bound = log.bind(url=url, path=item.path)
        try:
            fetched = await self.client.download(url, dest)
        except DownloadFailed as failure:
            bound.warning("item.failed", error=str(failure), attempts=failure.attempts)
            return Outcome(
                id=item.id,
                status=Status.FAILED,
                url=url,
                attempts=failure.attempts,
                http_status=failure.http_status,
                error=str(failure),
            )
        return Outcome(
            id=item.id,
            status=Status.DONE,
            url=url,
            attempts=fetched.attempts,
            http_status=fetched.http_status,
            size=fetched.stored.size,
            sha256=fetched.stored.sha256,
        )

    async def _record(self, receive: ObjectReceiveStream[Outcome]) -> None:
        pending: list[Outcome] = []
        flush_every = self.settings.manifest_flush_seconds
        deadline = time.monotonic() + flush_every
        try:
            async with receive:
                while True:
                    outcome = None
                    with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                        try:
                            outcome = await receive.receive()
                        except anyio.EndOfStream:
                            break
                    if outcome is not None:
                        pending.append(outcome)
                        self._count(outcome)
                    if len(pending) >= self.settings.manifest_batch or (
                        time.monotonic() >= deadline
                    ):
                        await self.manifest.record(pending)
                        pending = []
                        deadline = time.monotonic() + flush_every
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.manifest.record(pending)

    def _count(self, outcome: Outcome) -> None:
        if outcome.status is Status.DONE:
            self.stats.done += 1
            self.stats.bytes += outcome.size or 0
        else:
            self.stats.failed += 1
            self.stats.failures.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)


def images_per_second(count: int, seconds: float) -> float:
    """A rate for the summary that never divides by zero."""
    return round(count / seconds, 2) if seconds > 0 and math.isfinite(seconds) else 0.0
