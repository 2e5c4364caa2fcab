"""What the server saw and did, for tests to assert on (requests, concurrency, faults, bytes).

Guarded by a lock because `serve_in_thread` lets a test thread read while the server's loop
thread writes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict


class Counters:
    """Request, concurrency, fault and byte tallies; `reset()` starts a new test phase."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests_total = 0
        self.by_route: Counter[str] = Counter()  # 'rma', 'image', 'grid', 'redirect', 'other'
        self.by_url: Counter[str] = Counter()  # decoded path + '?' + query, as received
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()  # fault kind, 'permanent_<kind>' for permanent ones
        self.in_flight = 0
        self.max_in_flight = 0
        self.bytes_sent = 0
        self.times: defaultdict[str, list[float]] = defaultdict(list)  # monotonic arrival times

    def begin(self, route: str, url: str) -> int:
        """Count a request entering its handler; returns the attempt number for this URL."""
        with self._lock:
            self.requests_total += 1
            self.by_route[route] += 1
            self.by_url[url] += 1
            self.times[url].append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.by_url[url]

    def end(self) -> None:
        """Count a request leaving: fully written, aborted or cancelled."""
        with self._lock:
            self.in_flight -= 1

    def fault(self, kind: str) -> None:
        """Count one injected fault, so tests can tell faults from genuine errors."""
        with self._lock:
            self.faults[kind] += 1

    def status(self, status: int) -> None:
        """Count one response status line actually sent."""
        with self._lock:
            self.by_status[status] += 1

    def sent(self, count: int) -> None:
        """Count body bytes written to the socket, including partial bodies."""
        with self._lock:
            self.bytes_sent += count

    def downloads(self, url: str) -> int:
        """How many times a decoded path+query was requested."""
        with self._lock:
            return self.by_url[url]

    def reset(self) -> None:
        """Zero everything; requests still in flight stay counted as in flight."""
        with self._lock:
            self.requests_total = 0
            self.by_route = Counter()
            self.by_url = Counter()
            self.by_status = Counter()
            self.faults = Counter()
            self.max_in_flight = self.in_flight
            self.bytes_sent = 0
            self.times = defaultdict(list)

    def snapshot(self) -> dict[str, object]:
        """A consistent copy, handy for logging and for comparing phases."""
        with self._lock:
            return {
                "requests_total": self.requests_total,
                "by_route": dict(self.by_route),
                "by_url": dict(self.by_url),
                "by_status": dict(self.by_status),
                "faults": dict(self.faults),
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "bytes_sent": self.bytes_sent,
            }
