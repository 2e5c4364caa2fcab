"""The work source: pending items out of the manifest, into the fetch stage's stream.

Three ways to take items behind one interface (``run``, ``recording``, ``recorded``,
``returned``, ``release``):

- ``LeasedSource``, for a manifest others share (PostgreSQL): claims batches under a lease and
  renews the leases of what it holds. When nothing is claimable but others hold pending items,
  it waits for their leases (which end early if they record, and run out if they died), so a
  killed worker's items are always finished by the others.
- ``CursorSource``, for a manifest this process alone uses (SQLite under the output lock):
  nobody else takes items, so it reads pending items in id order past the highest id it took,
  without writing a claim, plus the items the resume check hands back (``returned``).
- ``ListSource``: exactly the items named (``verify --repair``).

``mirror`` and ``sync`` scope the first two to the items their own planning tagged (``scope``,
the id of the command's runs row): what other selections left pending stays for ``worker``,
which takes everything (no scope).

A source ends when nothing is left (unless it follows the manifest), on a stop request, or when
the fetch stage stops listening. The stream's bound is the backpressure: a source blocks on
``send`` while the fetch tasks are busy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Protocol

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from crawler.manifest import Manifest
from crawler.manifest.repository import Claimed
from crawler.signals import Stop
from crawler.store import Store
from crawler.streams import put

log = structlog.get_logger("crawler.source")

MIN_WAIT = 0.05  # seconds: the shortest pause before claiming again
RECHECK = 1.0  # seconds: how often a source waiting on others' claims looks again
HEARTBEAT = 5.0  # seconds between lease renewals (or lease / 3 if shorter)


class Planning:
    """What the planner tells its one source: items landed (a doorbell), and planning is over.

    A ring while the source is busy is not lost: its next ``wait`` returns at once.
    """

    def __init__(self, *, finished: bool = False) -> None:
        self.finished = finished
        self._rung = anyio.Event()

    def ring(self) -> None:
        """New items were recorded (or handed back): wake the waiting source."""
        self._rung.set()

    def finish(self) -> None:
        self.finished = True
        self.ring()

    async def wait(self, at_most: float) -> None:
        """Until the bell rings (or rang since the last wait), or ``at_most`` seconds pass."""
        with anyio.move_on_after(at_most):
            await self._rung.wait()
        self._rung = anyio.Event()  # heard: the next ring is a new one


class Source(Protocol):
    """Pending items for one fetch stage."""

    async def run(self, send: MemoryObjectSendStream[Claimed]) -> None: ...

    def recording(self, ids: Sequence[int]) -> None:
        """The recorder is about to write these items' outcomes."""

    def recorded(self, ids: Sequence[int]) -> None:
        """The recorder has written these items' outcomes: they are no longer pending."""

    def returned(self, ids: Sequence[int]) -> None:
        """These items went back to pending (the resume check found their file gone)."""

    async def release(self) -> None:
        """Give back what was taken and not recorded (the end of a run)."""


async def _send_all(
    send: MemoryObjectSendStream[Claimed], batch: Iterable[Claimed], stop: Stop
) -> bool:
    """Hand a batch to the fetch stage; False when it stopped listening or a stop came."""
    for item in batch:
        if stop.requested:
            return False
        try:
            await put(send, item)
        except anyio.BrokenResourceError:
            return False
    return True


class CursorSource:
    """Alone on the manifest: reads pending items past a cursor; claims nothing."""

    def __init__(
        self,
        manifest: Manifest,
        planning: Planning,
        stop: Stop,
        *,
        batch: int,
        follow: bool = False,
        poll_seconds: float = 10.0,
        scope: int | None = None,
    ) -> None:
        self.manifest = manifest
        self.planning = planning
        self.stop = stop
        self.scope = scope  # take only the items this run planned (None: every pending one)
        self.batch = batch
        self.follow = follow
        self.poll_seconds = poll_seconds
        self._high = 0  # the highest id read
        self._returned: list[int] = []  # ids handed back to the queue, perhaps below the cursor
        # Taken and not yet recorded: still pending in the manifest, so never taken again.
        self._held: set[int] = set()

    def recording(self, ids: Sequence[int]) -> None:
        pass

    def recorded(self, ids: Sequence[int]) -> None:
        # After the write: until then the items read as pending and must stay held.
        self._held.difference_update(ids)

    def returned(self, ids: Sequence[int]) -> None:
        self._returned.extend(ids)
        self.planning.ring()

    async def release(self) -> None:
        pass

    async def run(self, send: MemoryObjectSendStream[Claimed]) -> None:
        async with send:
            while not self.stop.requested:
                # Read before the take: an empty take proves the queue drained only if planning
                # had finished when it started (items planned meanwhile may not be visible).
                finished = self.planning.finished
                batch = await self.take()
                if batch:
                    if not await _send_all(send, batch, self.stop):
                        return
                elif not finished:
                    await self.planning.wait(1.0)
                elif self.follow:
                    await self.stop.wait(self.poll_seconds)
                else:
                    return

    async def take(self) -> list[Claimed]:
        """Items handed back first, then the next ones past the cursor; none already held."""
        while True:
            if self._returned:
                ids, self._returned = self._returned[: self.batch], self._returned[self.batch :]
                found = await self.manifest.pending_in(ids, run=self.scope)
            else:
                found = await self.manifest.pending(
                    after=self._high, limit=self.batch, run=self.scope
                )
                if not found:
                    return []
                self._high = found[-1].id
            batch = [item for item in found if item.id not in self._held]
            self._held.update(item.id for item in batch)
            if batch:
                return batch


class ListSource:
    """Exactly the named items, those still pending (``verify --repair``)."""

    def __init__(self, manifest: Manifest, ids: Sequence[int], stop: Stop) -> None:
        self.manifest = manifest
        self.ids = list(ids)
        self.stop = stop

    def recording(self, ids: Sequence[int]) -> None:
        pass

    def recorded(self, ids: Sequence[int]) -> None:
        pass

    def returned(self, ids: Sequence[int]) -> None:
        pass

    async def release(self) -> None:
        pass

    async def run(self, send: MemoryObjectSendStream[Claimed]) -> None:
        async with send:
            for start in range(0, len(self.ids), 500):
                batch = await self.manifest.pending_in(self.ids[start : start + 500])
                if not await _send_all(send, batch, self.stop):
                    return


class LeasedSource:
    """Shares the manifest: claims under a lease, renews what it holds, waits for others."""

    def __init__(
        self,
        manifest: Manifest,
        store: Store,
        owner: str,
        planning: Planning,
        stop: Stop,
        *,
        lease: timedelta,
        batch: int,
        follow: bool = False,
        poll_seconds: float = 10.0,
        scope: int | None = None,
    ) -> None:
        self.manifest = manifest
        self.scope = scope  # claim only the items this run planned (None: every pending one)
        self.store = store
        self.owner = owner
        self.planning = planning
        self.stop = stop
        self.lease = lease
        self.batch = batch
        self.follow = follow
        self.poll_seconds = poll_seconds
        self.held: set[int] = set()  # claimed and not being recorded: the leases to renew
        self._waiting_on: dict[str, str] = {}

    def recording(self, ids: Sequence[int]) -> None:
        # Forgotten as the write starts: a renewal meanwhile must not count the claims the
        # write releases as lost.
        self.held.difference_update(ids)

    def recorded(self, ids: Sequence[int]) -> None:
        pass

    def returned(self, ids: Sequence[int]) -> None:
        self.planning.ring()  # a claim finds pending items wherever they are

    async def release(self) -> None:
        await self.manifest.release(self.owner)

    async def run(self, send: MemoryObjectSendStream[Claimed]) -> None:
        async with send, anyio.create_task_group() as group:
            group.start_soon(self._renew_leases)
            await self._claim_all(send)
            group.cancel_scope.cancel()

    async def _claim_all(self, send: MemoryObjectSendStream[Claimed]) -> None:
        while not self.stop.requested:
            finished = self.planning.finished  # before the claim: see CursorSource.run
            batch = await self.manifest.claim(self.owner, self.batch, self.lease, run=self.scope)
            if batch:
                self.held.update(item.id for item in batch)
                if not await _send_all(send, batch, self.stop):
                    return
                continue
            if not finished:
                await self.planning.wait(1.0)
                continue
            wait = await self._idle_wait()
            if wait is None:
                await self._sweep_orphaned_parts()
                return
            await self.stop.wait(wait)

    async def _idle_wait(self) -> float | None:
        """Nothing to claim: seconds to wait before trying again, or None to leave.

        Items others hold are waited for, until their lease ends, looking again every
        ``RECHECK`` seconds in case they finish first.
        """
        until = await self.manifest.next_claimable(self.owner, run=self.scope)
        if until is None:
            return self.poll_seconds if self.follow else None
        holders = await self.manifest.holders()
        waiting_on = {
            owner: f"{items} items, lease until {lease_end}Z"
            for owner, (items, lease_end) in holders.items()
            if owner != self.owner
        }
        if waiting_on != self._waiting_on:  # said once per change, not every second
            log.info("source.waiting_for_leases", holders=waiting_on)
            self._waiting_on = waiting_on
        return min(max(until, MIN_WAIT), RECHECK, self.poll_seconds)

    async def _renew_leases(self) -> None:
        interval = min(HEARTBEAT, self.lease.total_seconds() / 3)
        while True:
            await anyio.sleep(interval)
            held = sorted(self.held)
            renewed = await self.manifest.renew(self.owner, self.lease, held)
            still_held = len(self.held.intersection(held))
            if renewed < still_held:
                log.warning("lease.lost", owner=self.owner, held=still_held, renewed=renewed)

    async def _sweep_orphaned_parts(self) -> None:
        """Nothing pending outside our own claims: no other live worker is writing a file, so
        parts other processes left (a killed worker's) are garbage.

        "Now" is read off the store's own clock, then the manifest is asked once more: a part
        modified before that moment, with the queue still drained after it, has no live writer
        (a writer holds its claim until it records). Newer parts are spared.
        """
        try:
            drained_at = await self.store.clock()
        except OSError:
            return  # OUT cannot be written: nothing to sweep there either
        if await self.manifest.next_claimable(self.owner) is not None:
            return  # new items since: the next worker to find the queue drained sweeps
        removed = await self.store.sweep(drained_at)
        if removed:
            log.info("parts.swept", removed=removed)
