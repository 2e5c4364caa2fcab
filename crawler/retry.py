"""The retry policy as pure decisions: what is worth asking again, and how long to wait first."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime

from crawler.errors import ContentError, HTTPStatusError, QueryError, TransportError

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


def is_permanent(exc: BaseException) -> bool:
    """True for failures no retry can cure, so the caller stops at once."""
    return classify(exc, retry_after_max=0.0) is False


def utcnow() -> datetime:
    """Naive UTC now: the manifest stores naive UTC timestamps on every backend."""
    return datetime.now(UTC).replace(tzinfo=None)
