"""``--rate`` across processes: a token bucket shared through the Postgres manifest.

One process keeps aiolimiter's local bucket (``client.make_rate_limiter``). Several workers on
one Postgres manifest share a budget instead, so ``--rate R`` is the total of all of them, be
they one or twenty: each worker reserves the next short window of the budget (``block`` requests,
``block / R`` seconds of the database clock, ``manifest.budget.reserve``) and releases its
requests evenly inside it. Windows never overlap, so the total holds at R whoever joins, leaves
or dies; a worker that needs fewer requests than its share simply reserves less often.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from crawler.client import RateLimiter
from crawler.config import Settings
from crawler.errors import ManifestError
from crawler.manifest import Manifest
from crawler.manifest.budget import reserve

RESERVE_TIMEOUT = 30.0  # seconds: a manifest that cannot answer this fast is down
WINDOW = 0.1  # seconds of the total rate one reservation takes, at most


def block_size(rate: float, concurrency: int) -> int:
    """Requests per reservation: about ``WINDOW`` seconds of the total rate, at least one,
    at most one per concurrency slot (more could not be used before the window ends)."""
    return max(1, min(concurrency, math.ceil(rate * WINDOW)))


def spaced(start: float, count: int, rate: float) -> list[float]:
    """Release times of ``count`` requests from ``start``, evenly at ``rate`` per second."""
    return [start + index / rate for index in range(count)]


Reserve = Callable[[float], Awaitable[float]]


class SharedRateLimiter:
    """A ``RateLimiter`` whose tokens come in windows reserved from a shared budget."""

    def __init__(self, reserve_window: Reserve, rate: float, block: int) -> None:
        self._reserve = reserve_window
        self.rate = rate
        self.block = block
        self._times: deque[float] = deque()
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        """Wait for this worker's next reserved moment, reserving a window when none is left."""
        async with self._lock:
            now = time.monotonic()
            # Moments left over from a window long past would add up to a burst: drop them.
            while self._times and self._times[0] < now - self.block / self.rate:
                self._times.popleft()
            if not self._times:
                try:
                    with anyio.fail_after(RESERVE_TIMEOUT):
                        wait = await self._reserve(self.block / self.rate)
                except TimeoutError as exc:
                    raise ManifestError("the manifest did not answer a rate reservation") from exc
                self._times.extend(spaced(time.monotonic() + wait, self.block, self.rate))
            moment = self._times.popleft()
        await anyio.sleep(max(0.0, moment - time.monotonic()))


def limiter_for(settings: Settings, manifest: Manifest) -> RateLimiter | None:
    """The shared limiter when ``--rate`` is set on a Postgres manifest; otherwise None, and
    the client keeps its local bucket (SQLite manifests have one process by design)."""
    if settings.rate <= 0 or manifest.dialect != "postgresql":
        return None

    async def reserve_window(span: float) -> float:
        return await reserve(manifest, settings.api_base, span)

    return SharedRateLimiter(
        reserve_window, settings.rate, block_size(settings.rate, settings.concurrency)
    )
