"""The recorder stage: outcomes into the manifest, in batches.

A batch is written when it is full (``manifest_batch``) or its first outcome has waited
``manifest_flush_seconds``, and at the end; one transaction per batch keeps the manifest from
being the bottleneck. The recorder owns the run's counts of what was done and failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from crawler.manifest import Manifest, Status
from crawler.manifest.repository import Outcome
from crawler.source import Source
from crawler.streams import take


@dataclass
class FetchStats:
    """What reached the manifest; read by the progress bar and the summary."""

    done: int = 0
    failed: int = 0
    bytes: int = 0
    failures: list[Outcome] = field(default_factory=list)

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


def _drain(receive: MemoryObjectReceiveStream[Outcome]) -> list[Outcome]:
    left: list[Outcome] = []
    while True:
        try:
            left.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return left
