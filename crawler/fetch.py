"""Fetching: one task group, a queue of claimed items, N workers, one batching recorder.

The claimer takes items from the manifest under a lease (a pool alone on its manifest needs no
lease: it reads pending items in id order); workers download them through the shared client
(which enforces concurrency, rate and retries); the recorder commits outcomes in batches so the
manifest is never the bottleneck. Backpressure: the claimer claims again only once the workers
have taken most of the queue, and holds back while too many items are claimed but unrecorded.

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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import anyio
import structlog

from crawler import kinds
from crawler.client import ApiClient, DownloadFailed
from crawler.config import Settings
from crawler.manifest import Manifest, Status, workers
from crawler.manifest.repository import Claimed, Outcome
from crawler.store import filesystem_now, sweep_parts

log = structlog.get_logger("crawler.fetch")

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
        self.batch = max(16, settings.concurrency * 4)  # claim again once fewer are queued
        # Items taken per claim. A pool alone on its manifest (``exclusive``: SQLite, under the
        # output lock) takes four times more per claim, a quarter of the claims' cost per item;
        # pools that share a manifest take less, so the last items spread over every worker.
        self.claim_size = self.batch * 4 if exclusive else self.batch
        # A pool alone on its manifest needs no lease: nobody else claims, and a killed run's
        # items are simply pending next time. It reads pending items in id order past the
        # highest id it took (``_high``), which spares a row update and an index entry per item.
        self.exclusive = exclusive
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.held: set[int] = set()  # claimed and not yet recorded: the leases to renew
        self._high = 0  # exclusive: the highest id taken so far
        # Claimed items wait for a worker in a plain deque: a worker that finds one waiting takes
        # it without a trip through the event loop (a memory stream's receive() built an event,
        # a checkpoint and a task record per wait: ~5 % of the loop's samples).
        self.queue: deque[Claimed] = deque()
        self.claiming = True  # the claimer may still add items
        self._claimed = anyio.Event()  # set when items are queued or the claimer ends
        self._taken = anyio.Event()  # set when the queue runs low or a worker leaves
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
        await workers.register(self.manifest, self.owner, self.command)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._heartbeat)
                async with anyio.create_task_group() as work:
                    work.start_soon(self._record)
                    work.start_soon(self._claim)
                    try:
                        async with anyio.create_task_group() as fetching:
                            for _ in range(self.settings.concurrency * WORKERS_PER_SLOT):
                                fetching.start_soon(self._work)
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
            if not self.exclusive:  # an exclusive pool holds no leases
                held = sorted(self.held)
                renewed = await self.manifest.renew(self.owner, self.lease, held)
                still_held = len(self.held.intersection(held))
                if renewed < still_held:
                    log.warning("lease.lost", owner=self.owner, held=still_held, renewed=renewed)
            now = time.monotonic()
            rate = (self.client.requests - last_requests) / max(now - last_time, 1e-6)
            last_requests, last_time = self.client.requests, now
            await workers.beat(self.manifest, self.owner, self._beat(rate))

    async def _claim(self) -> None:
        try:
            while not self.stop.requested:
                room = min(self.claim_size, self.max_unrecorded - len(self.held))
                if room <= 0:
                    with anyio.move_on_after(1.0):
                        await self._recorded.wait()
                    continue
                # Read before the take: an empty take proves the queue drained only if planning
                # had finished when it started (items planned meanwhile may not be visible).
                planned_all = self.planning_done.is_set()
                self.planned = anyio.Event()
                batch = await self._take(room)
                if not batch:
                    if not planned_all:
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
                self.queue.extend(batch)
                self._claimed.set()
                self._claimed = anyio.Event()
                # Claim again once the workers have taken all but ``batch`` of the queue.
                while len(self.queue) >= self.batch and not self.stop.requested:
                    self._taken = anyio.Event()
                    await self._taken.wait()
        finally:
            self.claiming = False
            self._claimed.set()

    async def _take(self, room: int) -> list[Claimed]:
        """Up to ``room`` pending items for this pool: under a lease, or (exclusive) without."""
        if not self.exclusive:
            return await self.manifest.claim(self.owner, room, self.lease)
        batch = await self.manifest.pending(after=self._high, limit=room)
        if batch:
            self._high = batch[-1].id
            return batch
        # Nothing past the cursor: items sent back to the queue below it (the resume check
        # found their file missing) are taken now, skipping those this pool holds. Held as
        # the read starts: an item recorded meanwhile leaves ``held`` after its write, which
        # the read may not see.
        held = set(self.held)
        earlier = await self.manifest.pending(after=0, limit=room + len(held), upto=self._high)
        return [item for item in earlier if item.id not in held][:room]

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
        if self.exclusive:  # nobody else holds items: nothing to take means drained
            return self.settings.poll_seconds if self.follow else None
        until = await self.manifest.next_claimable(self.owner)
        if until is None:
            return self.settings.poll_seconds if self.follow else None
        return min(max(until, MIN_WAIT), RECHECK, self.settings.poll_seconds)

    async def _work(self) -> None:
        queue = self.queue
        try:
            while True:
                if not queue:
                    if not self.claiming:
                        return
                    await self._claimed.wait()
                    continue
                item = queue.popleft()
                if len(queue) < self.batch:
                    self._taken.set()
                if self.stop.requested:
                    return
                outcome = await fetch_item(self.client, self.settings.out, item)
                self.outcomes.append(outcome)
                self._count(outcome)
                if len(self.outcomes) >= self.settings.manifest_batch:
                    self._batch_ready.set()
        finally:
            self._taken.set()  # a stopping worker leaves queued items: the claimer must not wait

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
        # Leased: forgotten before the write, so a heartbeat in between cannot take the
        # released claims for lost leases. Exclusive: after it, since until then the items are
        # still pending in the manifest and the claimer must not take them again.
        if not self.exclusive:
            self.held.difference_update(recorded.id for recorded in pending)
        try:
            await self.manifest.record(pending)
        except BaseException:
            self.outcomes = pending + self.outcomes  # the final attempt tries them again
            raise
        if self.exclusive:
            self.held.difference_update(recorded.id for recorded in pending)
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


async def fetch_item(client: ApiClient, out: str | Path, item: Claimed) -> Outcome:
    """Fetch one item into OUT and say what the manifest should record of it.

    The destination is joined as a string: a pathlib join per item cost more than the
    system calls that store a small file (item paths are ours, relative, planned).
    """
    url = client.settings.api_base + item.ref
    try:
        fetched = await kinds.fetch(client, item, url, f"{os.fspath(out)}/{item.path}")
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
