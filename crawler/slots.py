"""Request slots with a fast lane: metadata pages go before downloads waiting for a slot.

One cap, ``--concurrency``, covers every request. When a slot frees and both an RMA page and
downloads are waiting, the page gets it: seeding is a few dozen requests that decide what
thousands of downloads will be, so a page stuck behind a queue of images starves the fetch
stage of work (issue 16: an ISH mirror at 0.52x the bound). A freed slot is handed straight
to the next waiter, so nobody can overtake a waiter between release and wake-up.
"""

from __future__ import annotations

from collections import deque

import anyio


class PrioritySlots:
    """A counting semaphore of ``total`` slots with two FIFO queues; urgent waiters go first."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("at least one slot")
        self.total = total
        self._free = total
        self._urgent: deque[anyio.Event] = deque()
        self._normal: deque[anyio.Event] = deque()

    @property
    def in_use(self) -> int:
        return self.total - self._free

    @property
    def waiting(self) -> tuple[int, int]:
        """(urgent, normal) waiters: for tests and diagnostics."""
        return len(self._urgent), len(self._normal)

    async def acquire(self, *, urgent: bool = False) -> None:
        # A free slot nobody waits for is taken without yielding (like anyio's fast_acquire):
        # a download's first attempt costs no trip through the event loop.
        if self._free > 0 and not self._urgent and not self._normal:
            self._free -= 1
            return
        event = anyio.Event()
        queue = self._urgent if urgent else self._normal
        queue.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # handed a slot while being cancelled: pass it on
                self.release()
            else:
                queue.remove(event)
            raise

    def release(self) -> None:
        """Hand the slot to the first urgent waiter, else the first other one, else free it."""
        queue = self._urgent or self._normal
        if queue:
            queue.popleft().set()
        else:
            self._free += 1
