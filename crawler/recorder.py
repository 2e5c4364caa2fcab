"""The recorder stage: outcomes into the manifest, in batches.

A batch is written when it is full (``manifest_batch``) or its first outcome has waited
``manifest_flush_seconds``, and at the end; one transaction per batch keeps the manifest from
being the bottleneck. The recorder owns the run's counts of what was done and failed, and
samples them over time (``FetchStats.timeline``) for the report's throughput chart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from crawler.manifest import Manifest, Status
from crawler.manifest.repository import Outcome
from crawler.source import Source
from crawler.streams import take

# (seconds since fetching started, items done, bytes done): the throughput over time.
Sample = tuple[float, int, int]
TIMELINE_POINTS = 400  # at most this many samples: a long run samples less often
TIMELINE_INTERVAL = 2.0  # seconds between samples at first


@dataclass
class FetchStats:
    """What reached the manifest; read by the progress bar and the summary."""

    done: int = 0
    failed: int = 0
    bytes: int = 0
    failures: list[Outcome] = field(default_factory=list)
    timeline: list[Sample] = field(default_factory=list)
    interval: float = TIMELINE_INTERVAL
    started: float = field(default_factory=time.monotonic)

    def sample(self, now: float | None = None, *, force: bool = False) -> None:
        """Note the counts if ``interval`` has passed since the last sample (or ``force``)."""
        seconds = round((time.monotonic() if now is None else now) - self.started, 3)
        last = self.timeline[-1][0] if self.timeline else 0.0
        if force or seconds - last >= self.interval:
            self.timeline.append((seconds, self.done, self.bytes))
            self.timeline, self.interval = thin(self.timeline, self.interval)

    def count(self, outcome: Outcome) -> None:
        if outcome.status is Status.DONE:
            self.done += 1
            self.bytes += outcome.size or 0
        else:
            self.failed += 1
            self.failures.append(outcome)


class Recorder:
    """Writes outcomes as they arrive, a batch per transaction."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        batch: int,
        flush_seconds: float,
        source: Source,
        on_recorded: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.batch = batch
        self.flush_seconds = flush_seconds
        self.source = source  # told before and after each write
        self.on_recorded = on_recorded  # the progress bar
        self.stats = FetchStats()
        self._pending: list[Outcome] = []  # received, not yet written

    async def run(self, receive: MemoryObjectReceiveStream[Outcome]) -> None:
        async with receive:
            try:
                while await self._gather(receive):
                    await self._write()
            finally:
                # A run cut short still records what it finished (those files are in place).
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    self._pending += _drain(receive)
                    await self._write()
                self.stats.sample(force=True)

    async def _gather(self, receive: MemoryObjectReceiveStream[Outcome]) -> bool:
        """The next batch: the first outcome, then whatever arrives within the flush interval;
        False once the stream has ended."""
        try:
            self._pending.append(await take(receive))
        except anyio.EndOfStream:
            return False
        with anyio.move_on_after(self.flush_seconds):
            while len(self._pending) < self.batch:
                try:
                    self._pending.append(await take(receive))
                except anyio.EndOfStream:
                    break
        return True

    async def _write(self) -> None:
        while self._pending:
            batch = self._pending[: self.batch]
            ids = [outcome.id for outcome in batch]
            self.source.recording(ids)
            await self.manifest.record(batch)
            self.source.recorded(ids)
            del self._pending[: len(batch)]
            for outcome in batch:
                self.stats.count(outcome)
                if self.on_recorded is not None:
                    self.on_recorded(outcome)
            self.stats.sample()


def thin(timeline: list[Sample], interval: float) -> tuple[list[Sample], float]:
    """Past ``TIMELINE_POINTS`` samples keep every other one and sample half as often, so a
    run of any length reports a few hundred points spread over all of it."""
    if len(timeline) <= TIMELINE_POINTS:
        return timeline, interval
    return timeline[::2], interval * 2


def _drain(receive: MemoryObjectReceiveStream[Outcome]) -> list[Outcome]:
    left: list[Outcome] = []
    while True:
        try:
            left.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return left
