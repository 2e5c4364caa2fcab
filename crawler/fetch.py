"""Fetching: one task group, a bounded stream of claimed items, N workers, one batching recorder.

The claimer takes items from the manifest under a lease; workers download them through the
shared client (which enforces concurrency, rate and retries); the recorder commits outcomes
in batches so the manifest is never the bottleneck. Backpressure comes from the bounded stream
of claimed items and from a cap on items claimed but not yet recorded.

A heartbeat renews the leases of the items the pool holds and reports its counters to the
``workers`` table. When nothing is claimable but other workers still hold pending items, the
claimer waits for their leases instead of leaving: they end early if the holder records them,
and run out if it died, so a killed worker's items are always finished by the others.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from crawler import kinds
from crawler.client import ApiClient, DownloadFailed
from crawler.config import Settings
from crawler.manifest import Manifest, Status, workers
from crawler.manifest.repository import Claimed, Outcome
from crawler.store import filesystem_now, sweep_parts

log = structlog.get_logger("crawler.fetch")

T = TypeVar("T")

HEARTBEAT = 5.0  # seconds between heartbeats (and lease renewals), or lease / 3 if shorter
MIN_WAIT = 0.05  # seconds: the shortest pause before claiming again
RECHECK = 1.0  # seconds: how often a worker waiting on others' claims looks again
# A worker holds a request slot only while its request runs, then waits for the group commit of
# its file (which may linger up to 20 ms for company, crawler/commit.py); the other workers of
# its slot start the next requests meanwhile. Requests in flight stay capped by the client's
# slots (--concurrency); a second worker per slot took the 50 ms run from 1.16x to 1.07x the
# minimal loop, four keep the slots busy while batches linger (docs/BENCHMARKS.md).
WORKERS_PER_SLOT = 4


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


async def watch_signals(stop: Stop, fetch_scope: anyio.CancelScope, grace: float) -> None:
    """First SIGINT/SIGTERM: stop claiming and give in-flight items ``grace`` seconds.

    A second signal ends the process at once; the manifest stays consistent because every
    write is a transaction and unrecorded items are simply fetched again next time.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stop.signal is None:
                stop.signal = int(signum)
                stop.event.set()
                log.warning("run.stopping", signal=signal.Signals(signum).name, grace_s=grace)

                async def cut_off() -> None:
                    await anyio.sleep(grace)
                    fetch_scope.cancel()

                async with anyio.create_task_group() as group:
                    group.start_soon(cut_off)
                    async for again in signals:
                        log.warning("run.abort", signal=signal.Signals(again).name)
                        os._exit(128 + int(again))


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
        command: str = "mirror",
        follow: bool = False,
        exclusive: bool = False,
    ) -> None:
        self.settings = settings
        self.manifest = manifest
        self.client = client
        self.owner = owner
        self.stop = stop
        self.planning_done = planning_done
        self.on_outcome = on_outcome
        self.command = command
        self.follow = follow  # keep polling for new items instead of leaving when drained
        self.stats = FetchStats()
        self.batch = max(16, settings.concurrency * 4)  # claimed items buffered for the workers
        # Items taken per claim. A pool alone on its manifest (``exclusive``: SQLite, under the
        # output lock) takes four times more per claim, a quarter of the claims' cost per item;
        # pools that share a manifest take less, so the last items spread over every worker.
        self.claim_size = self.batch * 4 if exclusive else self.batch
        self.exclusive = exclusive
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.held: set[int] = set()  # claimed and not yet recorded: the leases to renew
        self.planned = anyio.Event()  # poked by the planner when new items land
        # Outcomes go from the workers to the recorder through a plain list, and the recorder
        # wakes once per batch (full, or at the flush interval), not once per item.
        self.outcomes: list[Outcome] = []  # fetched, not yet recorded
        self.fetching = True
        self._batch_ready = anyio.Event()
        self._recorded = anyio.Event()  # set by each manifest write (the claimer may wait on it)
        # The claimer takes no more items while this many are claimed and not yet being recorded:
        # a slow manifest slows the fetching instead of piling up outcomes.
        self.max_unrecorded = self.claim_size + 2 * settings.manifest_batch

    def poke(self) -> None:
        """New items were planned: wake an idle claimer."""
        self.planned.set()

    async def run(self) -> FetchStats:
        """Fetch until nothing is pending (or a stop), then release what was not attempted."""
        claimed_send, claimed_receive = anyio.create_memory_object_stream[Claimed](self.batch)
        await workers.register(self.manifest, self.owner, self.command)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._heartbeat)
                async with anyio.create_task_group() as work:
                    work.start_soon(self._record)
                    work.start_soon(self._claim, claimed_send)
                    try:
                        async with anyio.create_task_group() as fetching, claimed_receive:
                            for _ in range(self.settings.concurrency * WORKERS_PER_SLOT):
                                fetching.start_soon(self._work, claimed_receive.clone())
                    finally:
                        self.fetching = False
                        self._batch_ready.set()
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.manifest.release(self.owner)
                await workers.stopped(self.manifest, self.owner, self._beat(0.0))
        return self.stats

    def _beat(self, rate: float) -> workers.Beat:
        return workers.Beat(
            requests=self.client.requests,
            done=self.stats.done,
            failed=self.stats.failed,
            bytes=self.stats.bytes,
            rate=round(rate, 3),
        )

    async def _heartbeat(self) -> None:
        """Renew the leases of held items and tell the workers table we are alive."""
        interval = min(HEARTBEAT, self.lease.total_seconds() / 3)
        last_requests, last_time = self.client.requests, time.monotonic()
        while True:
            await anyio.sleep(interval)
            held = sorted(self.held)
            renewed = await self.manifest.renew(self.owner, self.lease, held)
            still_held = len(self.held.intersection(held))
            if renewed < still_held:
                log.warning("lease.lost", owner=self.owner, held=still_held, renewed=renewed)
            now = time.monotonic()
            rate = (self.client.requests - last_requests) / max(now - last_time, 1e-6)
            last_requests, last_time = self.client.requests, now
            await workers.beat(self.manifest, self.owner, self._beat(rate))

    async def _claim(self, send: MemoryObjectSendStream[Claimed]) -> None:
        async with send:
            while not self.stop.requested:
                room = min(self.claim_size, self.max_unrecorded - len(self.held))
                if room <= 0:
                    with anyio.move_on_after(1.0):
                        await self._recorded.wait()
                    continue
                self.planned = anyio.Event()
                batch = await self.manifest.claim(self.owner, room, self.lease)
                if not batch:
                    if not self.planning_done.is_set():
                        with anyio.move_on_after(1.0):
                            await self.planned.wait()
                        continue
                    wait = await self._idle_wait()
                    if wait is None:
                        if not self.exclusive:
                            await self._sweep_orphaned_parts()
                        return
                    with anyio.move_on_after(wait):
                        await self.stop.event.wait()
                    continue
                self.held.update(item.id for item in batch)
                for item in batch:
                    if self.stop.requested:
                        return
                    try:
                        await _send(send, item)
                    except anyio.BrokenResourceError:
                        return  # every worker has stopped

    async def _sweep_orphaned_parts(self) -> None:
        """A shared manifest with nothing pending outside our own claims: no other live worker
        is writing a file, so part files other processes left (a killed worker's) are garbage.

        "Now" is read off the files' own clock (an NFS server stamps them, not this host), then
        the manifest is asked once more: a part modified before that moment, with the queue
        still drained after it, has no live writer (a writer holds its claim until it records).
        Newer parts are spared: a worker that claimed an item planned since may be writing it.
        Our own parts carry our token.
        """
        try:
            drained_at = await anyio.to_thread.run_sync(filesystem_now, self.settings.out)
        except OSError:
            return  # OUT cannot be written: nothing to sweep there either
        if await self.manifest.next_claimable(self.owner) is not None:
            return  # new items since: the next worker to find the queue drained sweeps
        removed = await anyio.to_thread.run_sync(sweep_parts, self.settings.out, drained_at)
        if removed:
            log.info("parts.swept", removed=removed)

    async def _idle_wait(self) -> float | None:
        """Nothing to claim: how long to wait before trying again, or None to leave.

        Items others hold are waited for: until their lease ends, looking again every
        ``RECHECK`` seconds in case they finish first. A drained queue ends the pool, unless it
        follows the manifest for items planned later.
        """
        until = await self.manifest.next_claimable(self.owner)
        if until is None:
            return self.settings.poll_seconds if self.follow else None
        return min(max(until, MIN_WAIT), RECHECK, self.settings.poll_seconds)

    async def _work(self, receive: MemoryObjectReceiveStream[Claimed]) -> None:
        async with receive:
            while True:
                try:
                    item = await _receive(receive)
                except anyio.EndOfStream:
                    return
                if self.stop.requested:
                    return
                outcome = await fetch_item(self.client, self.settings.out, item)
                self.outcomes.append(outcome)
                self._count(outcome)
                if len(self.outcomes) >= self.settings.manifest_batch:
                    self._batch_ready.set()

    async def _record(self) -> None:
        """Write outcomes in batches: when one is full, at the flush interval, and at the end."""
        try:
            while self.fetching or self.outcomes:
                if self.fetching and len(self.outcomes) < self.settings.manifest_batch:
                    with anyio.move_on_after(self.settings.manifest_flush_seconds):
                        await self._batch_ready.wait()
                self._batch_ready = anyio.Event()
                await self._write_outcomes()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                while self.outcomes:
                    await self._write_outcomes()

    async def _write_outcomes(self) -> None:
        """Record up to one batch of outcomes (``manifest_batch``), the oldest first."""
        size = self.settings.manifest_batch
        pending, self.outcomes = self.outcomes[:size], self.outcomes[size:]
        if not pending:
            return
        # Forgotten before the write, so a heartbeat in between cannot take the released
        # claims for lost leases.
        self.held.difference_update(recorded.id for recorded in pending)
        try:
            await self.manifest.record(pending)
        except BaseException:
            self.outcomes = pending + self.outcomes  # the final attempt tries them again
            raise
        self._recorded.set()
        self._recorded = anyio.Event()

    def _count(self, outcome: Outcome) -> None:
        if outcome.status is Status.DONE:
            self.stats.done += 1
            self.stats.bytes += outcome.size or 0
        else:
            self.stats.failed += 1
            self.stats.failures.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)


async def _send(send: MemoryObjectSendStream[T], item: T) -> None:
    """``send_nowait`` first: anyio's ``send()`` yields to the event loop once before it looks,
    an extra loop turn per item on the hot path; wait only when the buffer is full."""
    try:
        send.send_nowait(item)
    except anyio.WouldBlock:
        await send.send(item)


async def _receive(receive: MemoryObjectReceiveStream[T]) -> T:
    """``receive_nowait`` first, for the same reason; raises EndOfStream once drained."""
    try:
        return receive.receive_nowait()
    except anyio.WouldBlock:
        return await receive.receive()


async def fetch_item(client: ApiClient, out: Path, item: Claimed) -> Outcome:
    """Fetch one item into OUT and say what the manifest should record of it."""
    url = client.settings.api_base + item.ref
    try:
        fetched = await kinds.fetch(client, item, url, out / item.path)
    except DownloadFailed as failure:
        log.warning(
            "item.failed", url=url, path=item.path, error=str(failure), attempts=failure.attempts
        )
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


def images_per_second(count: int, seconds: float) -> float:
    """A rate for the summary that never divides by zero."""
    return round(count / seconds, 2) if seconds > 0 and math.isfinite(seconds) else 0.0
