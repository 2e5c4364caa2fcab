"""The retry policy: pure decisions (what is worth asking again, how long to wait) and the one
loop that applies them to every request, metadata and downloads alike."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import anyio

from crawler.errors import ContentError, HTTPStatusError, QueryError, RemoteError, TransportError

T = TypeVar("T")

# Statuses a later attempt can cure: timeouts, throttling and server-side failures.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def classify(exc: BaseException, *, retry_after_max: float) -> bool | float:
    """False to give up, True to back off exponentially, a float to wait exactly that long.

    Retry-After is honoured on any retryable status (capped so one header cannot stall a run).
    """
    if isinstance(exc, QueryError):
        return False
    if isinstance(exc, HTTPStatusError):
        if exc.status not in RETRYABLE_STATUSES:
            return False
        if exc.retry_after is not None:
            return min(exc.retry_after, retry_after_max)
        return True
    return isinstance(exc, TransportError | ContentError)


def reason_of(error: RemoteError) -> str:
    """A short, bounded word for why a request failed (a metrics label): http_503, timeout..."""
    if isinstance(error, HTTPStatusError):
        return f"http_{error.status}"
    if isinstance(error, TransportError):
        return error.reason
    if isinstance(error, ContentError):
        return "bad_content"
    return "other"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: retries after the first attempt, the backoff and the caps."""

    retries: int = 5
    wait_initial: float = 1.0
    wait_max: float = 60.0
    retry_after_max: float = 300.0
    deadline: float = 1800.0  # seconds of retrying one request before giving up; 0 = none
    retry_unresolved: bool = True  # a host name that did not resolve is asked again


def backoff(policy: RetryPolicy, retry: int) -> float:
    """The wait before retry number ``retry`` (1-based): exponential, jittered, capped."""
    exponential = policy.wait_initial * 2.0 ** (retry - 1)
    return min(policy.wait_max, exponential + random.uniform(0, policy.wait_initial))


def next_wait(
    policy: RetryPolicy, error: RemoteError, attempts: int, elapsed: float
) -> float | None:
    """Seconds to wait before attempt ``attempts + 1``, or None to give up."""
    decision = classify(error, retry_after_max=policy.retry_after_max)
    if isinstance(error, TransportError) and error.unresolved and not policy.retry_unresolved:
        return None
    if decision is False or attempts > policy.retries:
        return None
    wait = backoff(policy, attempts) if decision is True else float(decision)
    if policy.deadline and elapsed + wait > policy.deadline:
        return None
    return wait


class GaveUp(Exception):
    """The policy gave up on a request: the last error and how many attempts were made."""

    def __init__(self, error: RemoteError, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts

    @property
    def http_status(self) -> int | None:
        """The last HTTP status, for the manifest (None when no answer came)."""
        return self.error.status if isinstance(self.error, HTTPStatusError) else None


OnRetry = Callable[[RemoteError, int, float], None]


async def retrying(
    policy: RetryPolicy, once: Callable[[], Awaitable[T]], on_retry: OnRetry | None = None
) -> tuple[T, int]:
    """Run ``once`` until it succeeds or the policy gives up; returns (result, attempts).

    Only RemoteError is retried: a disk or manifest problem is not the server's and is raised
    as it is. Gives up by raising GaveUp.
    """
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            return await once(), attempts
        except RemoteError as exc:
            wait = next_wait(policy, exc, attempts, time.monotonic() - started)
            if wait is None:
                raise GaveUp(exc, attempts) from exc
            if on_retry is not None:
                on_retry(exc, attempts, wait)
        await anyio.sleep(wait)


def utcnow() -> datetime:
    """Naive UTC now: the manifest stores naive UTC timestamps on every backend."""
    return datetime.now(UTC).replace(tzinfo=None)
