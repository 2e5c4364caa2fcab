"""Stopping a run: the first SIGINT/SIGTERM stops taking new work and gives in-flight items a
grace period; the second ends the process at once.

The manifest stays consistent either way: every write is a transaction, and items fetched but
not yet recorded are simply fetched again by the next run.
"""

from __future__ import annotations

import os
import signal

import anyio
import structlog

log = structlog.get_logger("crawler.signals")


class Stop:
    """The run's stop request, and the work it cuts off once the grace has run out."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.signal: int | None = None
        self._scopes: list[anyio.CancelScope] = []
        self._cut = False

    def scope(self) -> anyio.CancelScope:
        """A cancel scope for work to cut off after the grace (downloads, seeding)."""
        scope = anyio.CancelScope()
        if self._cut:
            scope.cancel()
        self._scopes.append(scope)
        return scope

    def cut_off(self) -> None:
        self._cut = True
        for scope in self._scopes:
            scope.cancel()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, signum: int | None = None) -> None:
        if self.signal is None and signum is not None:
            self.signal = signum
        self._event.set()

    async def wait(self, at_most: float | None = None) -> None:
        """Until a stop is requested, or ``at_most`` seconds pass."""
        with anyio.move_on_after(at_most):
            await self._event.wait()


async def watch_signals(stop: Stop, grace: float) -> None:
    """Run until cancelled: the first signal requests the stop and cuts the downloads off
    ``grace`` seconds later; a second one exits the process at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stop.signal is None:
                stop.request(int(signum))
                log.warning("run.stopping", signal=signal.Signals(signum).name, grace_s=grace)
                async with anyio.create_task_group() as group:
                    group.start_soon(_cut_off, stop, grace)
                    async for again in signals:
                        log.warning("run.abort", signal=signal.Signals(again).name)
                        os._exit(128 + int(again))


async def _cut_off(stop: Stop, grace: float) -> None:
    await anyio.sleep(grace)
    stop.cut_off()
