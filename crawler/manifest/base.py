"""The manifest handle: its connections, the one error boundary, and the records it trades in.

Every statement runs through ``ManifestBase._run``: errors are translated once there, deadlock
victims run again and a lost connection is waited for (crawler/manifest/errors.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from sqlalchemy import DateTime, func
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crawler.errors import ManifestError
from crawler.manifest import errors
from crawler.manifest.models import Status, items
from crawler.retry import utcnow

T = TypeVar("T")

INSERT_CHUNK = 2000

# The statements run once per item, as driver SQL (``Manifest._driver_sql``).
_RECORD = (
    "UPDATE items SET status = ?, url = ?, attempts = attempts + ?, http_status = ?, size = ?, "
    "sha256 = ?, error = ?, problem = NULL, claimed_by = NULL, lease_until = NULL, updated_at = ?, "
    "fetched_at = ? WHERE id = ? AND status <> 'superseded'"
)
_PENDING = (
    "SELECT id, ref, path, kind, data_set_id, image_id FROM items "
    "WHERE status = ? AND id > ? ORDER BY id LIMIT ?"
)
_PENDING_OF_RUN = (
    "SELECT id, ref, path, kind, data_set_id, image_id FROM items "
    "WHERE status = ? AND id > ? AND plan_run = ? ORDER BY id LIMIT ?"
)
CHUNK = 500  # ids per IN (...) list
RETRY_SECONDS = 120.0  # how long a lost database connection is waited for, by default


@dataclass(slots=True)
class Claimed:
    """An item a pool has taken: under a lease, or (alone on its manifest) without one."""

    id: int
    ref: str
    path: str
    kind: str
    data_set_id: int
    image_id: int | None


CLAIMED_COLUMNS = (
    items.c.id,
    items.c.ref,
    items.c.path,
    items.c.kind,
    items.c.data_set_id,
    items.c.image_id,
)


@dataclass(slots=True)
class Outcome:
    """What one fetch ended in, as the manifest records it."""

    id: int
    status: Status
    url: str
    attempts: int
    http_status: int | None = None
    size: int | None = None
    sha256: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Tally:
    """Items and bytes of one status (bytes only count recorded sizes)."""

    items: int = 0
    bytes: int = 0


class ManifestBase:
    """A connection to one manifest database; the parts add what each concern needs."""

    def __init__(self, engine: AsyncEngine, *, retry_seconds: float = RETRY_SECONDS) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.retry_seconds = retry_seconds

    async def close(self) -> None:
        """Release connections (and let SQLite checkpoint its WAL)."""
        await self.engine.dispose()

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that a cancellation cannot cut in half.

        A stopping run cancels its tasks again and again at every await (anyio's cancel scopes);
        caught inside SQLAlchemy's commit or connection cleanup, that orphans a close task which
        the event loop's shutdown then waits on forever. So the cancellation is taken before the
        transaction or after it, never inside; every use is a short unit of work.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        with anyio.CancelScope(shield=True):
            async with self.engine.begin() as connection:
                yield connection

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        """A read that a cancellation cannot cut in half (see ``_begin``)."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        with anyio.CancelScope(shield=True):
            async with self.engine.connect() as connection:
                yield connection

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool) -> T:
        """``work`` in one transaction (or one read), under the manifest's retry rules."""

        async def once() -> T:
            async with self._begin() if write else self._connect() as connection:
                return await work(connection)

        what = "write" if write else "read"
        return await errors.run(once, what=what, retry_seconds=self.retry_seconds)

    async def execute(self, statement: Any, params: Any = None) -> Any:
        """One statement in its own transaction; its (buffered) result.

        A ``str`` statement is the driver's own SQL (see ``_driver_sql``), run as is.
        """

        async def work(connection: AsyncConnection) -> Any:
            if isinstance(statement, str):
                return await connection.exec_driver_sql(statement, params)
            return await connection.execute(statement, params)

        return await self._run(work, write=True)

    async def read(self, statement: Any) -> list[Any]:
        """The rows of one query."""

        async def work(connection: AsyncConnection) -> list[Any]:
            return list((await connection.execute(statement)).all())

        return await self._run(work, write=False)

    async def read_mappings(self, statement: Any) -> list[dict[str, Any]]:
        """The rows of one query, as dicts."""

        async def work(connection: AsyncConnection) -> list[dict[str, Any]]:
            return [dict(row) for row in (await connection.execute(statement)).mappings().all()]

        return await self._run(work, write=False)

    def now(self) -> Any:
        """The clock of leases and heartbeats: the server's on Postgres (one clock for every
        host), ours on SQLite (one host); naive UTC either way, like every stored timestamp."""
        if self.dialect == "postgresql":
            return func.timezone("UTC", func.now(), type_=DateTime())
        return utcnow()

    def _driver_sql(self, template: str) -> str:
        """``template`` with each ``?`` in the driver's own placeholder style.

        The batch writes (a row per item planned or fetched) go to the driver as plain tuples:
        SQLAlchemy's per-row parameter processing cost more than SQLite's own work.
        """
        style = self.engine.dialect.paramstyle
        if style == "qmark":
            return template
        parts = template.split("?")
        if style == "numeric_dollar":
            marks = [f"${n}" for n in range(1, len(parts))]
        elif style in ("format", "pyformat"):
            marks = ["%s"] * (len(parts) - 1)
        else:
            raise ManifestError(f"unsupported database driver parameter style {style!r}")
        return "".join(part + mark for part, mark in zip(parts, [*marks, ""], strict=True))

    def _timestamp(self, moment: datetime) -> Any:
        """``moment`` as the driver takes it for our DateTime columns (SQLite: SQLAlchemy's text
        form, so rows written here read back like every other row)."""
        dialect = self.engine.dialect
        process = items.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
        return process(moment) if process is not None else moment


def of_run(run: int | None) -> tuple[Any, ...]:
    """The condition that scopes a query to the items ``run`` planned (none without one)."""
    return () if run is None else (items.c.plan_run == run,)
