"""The manifest's one boundary for database errors: translated once, transient ones retried.

Every statement the manifest runs goes through ``run`` (crawler/manifest/repository.py), which
turns SQLAlchemy's and the drivers' exceptions into ManifestError, runs a deadlock victim again,
and rides out a lost connection (a server restart, a network blip, an administrator's kill) for
up to ``retry_seconds``, so a fleet of workers carries on instead of exiting together.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio
import structlog
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from crawler.errors import ManifestError

log = structlog.get_logger("crawler.manifest")

T = TypeVar("T")

# Postgres aborts one of two transactions that wait on each other (40P01) or cannot be
# serialized (40001); running the loser again is the documented remedy.
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
CONFLICT_ATTEMPTS = 4
# Connection exceptions (class 08), and the server shutting down or starting up (57P01-57P03).
LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
LOST_WORDS = (
    "connection was closed",
    "connection is closed",
    "connection reset",
    "connection refused",
    "server closed the connection",
    "terminating connection",
    "the database system is",
    "connection_lost",
    "broken pipe",
)


def _sqlstate(exc: BaseException) -> str | None:
    original = getattr(exc, "orig", None)
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return str(code) if code else None


def is_conflict(exc: BaseException) -> bool:
    """A write that failed only because of a concurrent one, and may simply be run again."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return (
        _sqlstate(exc) in CONFLICT_SQLSTATES
        or "deadlock detected" in text
        or "could not serialize" in text
    )


def is_connection_lost(exc: BaseException) -> bool:
    """The database went away (or never answered): a later attempt may find it back."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    code = _sqlstate(exc)
    if code is not None and (code.startswith("08") or code in LOST_SQLSTATES):
        return True
    chain: BaseException | None = exc
    for _ in range(8):  # the exception, the driver's, and what caused that
        if chain is None:
            break
        if isinstance(chain, ConnectionError | TimeoutError):
            return True
        if any(word in str(chain).lower() for word in LOST_WORDS):
            return True
        chain = getattr(chain, "orig", None) or chain.__cause__
    return False


def reason(exc: BaseException) -> str:
    """The driver's reason, on one line (psycopg's connection errors span several)."""
    original = getattr(exc, "orig", None) or exc
    return " ".join(str(original).split()) or original.__class__.__name__


@contextmanager
def translate(what: str) -> Iterator[None]:
    """SQLAlchemy's and the drivers' failures become one ManifestError line."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        raise ManifestError(f"manifest {what} failed: {reason(exc)}") from exc


async def run(operation: Callable[[], Awaitable[T]], *, what: str, retry_seconds: float) -> T:
    """``operation`` (one unit of work) with the manifest's retry rules; ManifestError at last."""
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            with translate(what):
                return await operation()
        except ManifestError as error:
            cause = error.__cause__
            if cause is None:
                raise
            if is_conflict(cause) and attempt < CONFLICT_ATTEMPTS:
                await anyio.sleep(0.05 * attempt)
                continue
            waited = time.monotonic() - started
            if not is_connection_lost(cause) or waited >= retry_seconds:
                raise
            wait = min(0.1 * 2**attempt, 5.0, max(0.0, retry_seconds - waited))
            log.warning("manifest.retrying", what=what, reason=reason(cause), wait_s=wait)
            await anyio.sleep(wait)
