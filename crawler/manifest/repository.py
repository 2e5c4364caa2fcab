"""Manifest operations: idempotent planning, claims with leases, batched records, reports.

The same statements serve SQLite and Postgres: claims are one UPDATE ... RETURNING over a
sub-select that takes ``FOR UPDATE SKIP LOCKED`` where the backend has it, so several
workers can share one Postgres manifest without a coordinator. On Postgres, leases are measured
by the database server's clock, so workers on hosts whose clocks disagree still agree on them.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
from sqlalchemy import DateTime, and_, case, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from crawler.errors import ManifestError
from crawler.manifest.asyncengine import AsyncConnection, AsyncEngine
from crawler.manifest.models import Status, items
from crawler.plan import Item
from crawler.retry import utcnow

WRITE_ATTEMPTS = 4
# Postgres aborts one of two transactions that wait on each other (40P01) or cannot be
# serialized (40001); running the loser again is the documented remedy.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def is_transient(exc: BaseException) -> bool:
    """A write that failed only because of a concurrent one, and may simply be run again."""
    original = getattr(exc, "orig", None)
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    text = str(original or exc).lower()
    return (
        code in TRANSIENT_SQLSTATES or "deadlock detected" in text or "could not serialize" in text
    )


INSERT_CHUNK = 2000

# The statements run once per item, as driver SQL (``Manifest._driver_sql``).
_INSERT_SQLITE = (
    "INSERT INTO items (ref, url, path, kind, data_set_id, image_id, status, attempts, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ref) DO NOTHING"
)
_RECORD = (
    "UPDATE items SET status = ?, url = ?, attempts = attempts + ?, http_status = ?, size = ?, "
    "sha256 = ?, error = ?, claimed_by = NULL, lease_until = NULL, updated_at = ?, "
    "fetched_at = ? WHERE id = ?"
)
_PENDING = (
    "SELECT id, ref, path, kind, data_set_id, image_id FROM items "
    "WHERE status = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?"
)
MAX_ID = 2**63 - 1


# Not frozen: built per item, and a frozen dataclass's __init__ (object.__setattr__ per field)
# costs about four times a plain one's.
@dataclass(slots=True)
class Claimed:
    """An item a pool has taken: under a lease, or (alone on its manifest) without one."""

    id: int
    ref: str
    path: str
    kind: str
    data_set_id: int
    image_id: int | None


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


class Manifest:
    """A handle on one manifest database; every method is one short unit of work."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def close(self) -> None:
        """Release connections (and let SQLite checkpoint its WAL)."""
        await self.engine.dispose()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
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
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A read that a cancellation cannot cut in half (see ``begin``)."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        with anyio.CancelScope(shield=True):
            async with self.engine.connect() as connection:
                yield connection

    def now(self) -> Any:
        """The clock of leases and heartbeats: the server's on Postgres (one clock for every
        host), ours on SQLite (one host); naive UTC either way, like every stored timestamp."""
        if self.dialect == "postgresql":
            return func.timezone("UTC", func.now(), type_=DateTime())
        return utcnow()

    async def _write(self, statement: Any, params: Any = None) -> Any:
        """One statement in its own transaction; a deadlock victim is simply run again.

        A ``str`` statement is the driver's own SQL (see ``_driver_sql``), run as is.
        """
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                async with self.begin() as connection:
                    if isinstance(statement, str):
                        return await connection.exec_driver_sql(statement, params)
                    return await connection.execute(statement, params)
            except (SQLAlchemyError, OSError) as exc:
                if attempt < WRITE_ATTEMPTS and is_transient(exc):
                    await anyio.sleep(0.05 * attempt)
                    continue
                raise ManifestError(f"manifest write failed: {getattr(exc, 'orig', exc)}") from exc
        raise AssertionError("unreachable")

    def _driver_sql(self, template: str) -> str:
        """``template`` with each ``?`` in the driver's own placeholder style.

        The hot batch writes (a row per item planned or fetched) go to the driver as plain
        tuples: SQLAlchemy's per-row parameter processing cost more than SQLite's own work.
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

    async def add_items(self, planned: Iterable[Item], api_base: str) -> int:
        """Record planned items; items already known (same ref) are left as they are.

        A chunk per transaction (see ``begin``): a stop keeps the chunks already written.
        """
        insert = self._insert_sqlite if self.dialect == "sqlite" else self._insert_postgresql
        now = utcnow()
        added = 0
        iterator = iter(planned)
        try:
            while chunk := list(itertools.islice(iterator, INSERT_CHUNK)):
                async with self.begin() as connection:
                    added += await insert(connection, chunk, api_base, now)
        except (SQLAlchemyError, OSError) as exc:
            raise ManifestError(f"manifest write failed: {getattr(exc, 'orig', exc)}") from exc
        return added

    async def _insert_sqlite(
        self, connection: AsyncConnection, chunk: list[Item], api_base: str, now: datetime
    ) -> int:
        """Plain driver rows; SQLite counts the rows it really inserted."""
        stamp = self._timestamp(now)
        pending = Status.PENDING.value
        rows = [
            (
                item.ref,
                api_base + item.ref,
                item.path,
                item.kind,
                item.data_set_id,
                item.image_id,
                pending,
                0,
                stamp,
                stamp,
            )
            for item in chunk
        ]
        result = await connection.exec_driver_sql(_INSERT_SQLITE, rows)
        return max(0, int(result.rowcount or 0))

    async def _insert_postgresql(
        self, connection: AsyncConnection, chunk: list[Item], api_base: str, now: datetime
    ) -> int:
        """RETURNING lists only the rows really inserted: no count(*) over a growing table."""
        # Imported here: SQLite manifests never load the PostgreSQL dialect.
        from sqlalchemy.dialects import postgresql

        statement = (
            postgresql.insert(items)
            .on_conflict_do_nothing(index_elements=["ref"])
            .returning(items.c.id)
        )
        batch = [
            {
                "ref": item.ref,
                "url": item.url(api_base),
                "path": item.path,
                "kind": item.kind,
                "data_set_id": item.data_set_id,
                "image_id": item.image_id,
                "status": Status.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for item in chunk
        ]
        return len((await connection.execute(statement, batch)).all())

    async def reopen(self, *, exclusive: bool) -> int:
        """Start a run: failed items get another chance, stale claims are released.

        ``exclusive`` (this process holds the output lock) releases every claim; otherwise
        only claims whose lease has expired. Returns how many failed items were reopened.
        """
        result = await self._write(
            update(items)
            .where(items.c.status == Status.FAILED.value)
            .values(status=Status.PENDING.value, updated_at=utcnow())
        )
        await self.reclaim(exclusive=exclusive)
        return int(result.rowcount or 0)

    async def reclaim(self, *, exclusive: bool) -> int:
        """Release stale claims: every claim when ``exclusive``, else those whose lease expired.

        Claiming skips expired leases anyway; releasing them at start makes ``ls`` and
        ``status`` say plainly that nobody holds those items. Returns how many were released.
        """
        stale: Any = items.c.claimed_by.is_not(None)
        if not exclusive:
            stale = and_(stale, items.c.lease_until < self.now())
        result = await self._write(
            update(items).where(stale).values(claimed_by=None, lease_until=None)
        )
        return int(result.rowcount or 0)

    async def done_files(self, chunk: int = 20000) -> AsyncIterator[list[tuple[int, str, int]]]:
        """(id, path, size) of done items in id order, a chunk at a time."""
        last = 0
        while True:
            async with self.connect() as connection:
                rows = (
                    await connection.execute(
                        select(items.c.id, items.c.path, items.c.size)
                        .where(items.c.status == Status.DONE.value, items.c.id > last)
                        .order_by(items.c.id)
                        .limit(chunk)
                    )
                ).all()
            if not rows:
                return
            last = rows[-1][0]
            yield [(int(r[0]), str(r[1]), int(r[2] or 0)) for r in rows]

    async def mark_pending(self, ids: Sequence[int], reason: str) -> None:
        """Send items back to the queue (their file is gone or wrong)."""
        if not ids:
            return
        now = utcnow()
        for start in range(0, len(ids), 500):
            await self._write(
                update(items)
                .where(items.c.id.in_(ids[start : start + 500]))
                .values(status=Status.PENDING.value, error=reason, updated_at=now)
            )

    async def claim(self, owner: str, limit: int, lease: timedelta) -> list[Claimed]:
        """Take up to ``limit`` pending items nobody holds, in id order, under a lease."""
        now = self.now()
        free = select(items.c.id).where(
            items.c.status == Status.PENDING.value,
            or_(items.c.claimed_by.is_(None), items.c.lease_until < now),
        )
        free = free.order_by(items.c.id).limit(limit)
        if self.dialect == "postgresql":
            free = free.with_for_update(skip_locked=True)
        statement = (
            update(items)
            .where(items.c.id.in_(free.scalar_subquery()))
            .values(claimed_by=owner, lease_until=now + lease)
            .returning(
                items.c.id,
                items.c.ref,
                items.c.path,
                items.c.kind,
                items.c.data_set_id,
                items.c.image_id,
            )
        )
        result = await self._write(statement)
        rows = sorted(result.all(), key=lambda r: r[0])
        return [Claimed(*row) for row in rows]

    async def pending(self, *, after: int, limit: int, upto: int | None = None) -> list[Claimed]:
        """Pending items with ``after`` < id (<= ``upto``), in id order, without claiming them.

        For a pool alone on its manifest (the output lock): nobody else takes items, so a read
        suffices where a claim writes a row and an index entry per item.
        """
        params = (Status.PENDING.value, after, MAX_ID if upto is None else upto, limit)
        try:
            async with self.connect() as connection:
                result = await connection.exec_driver_sql(self._driver_sql(_PENDING), params)
                return [Claimed(*tuple(row)) for row in result.all()]
        except (SQLAlchemyError, OSError) as exc:
            raise ManifestError(f"manifest read failed: {getattr(exc, 'orig', exc)}") from exc

    async def renew(self, owner: str, lease: timedelta, ids: Sequence[int] | None = None) -> int:
        """Extend the lease on what this owner still holds (of ``ids``, when given).

        Returns how many leases were extended: fewer than ``ids`` means some were lost (the
        lease ran out and another worker took the item).
        """
        condition: Any = and_(items.c.claimed_by == owner, items.c.status == Status.PENDING.value)
        if ids is None:
            result = await self._write(
                update(items).where(condition).values(lease_until=self.now() + lease)
            )
            return int(result.rowcount or 0)
        renewed = 0
        for start in range(0, len(ids), 500):
            # Rows a concurrent record() holds are being settled: skip them rather than wait,
            # so renewing and recording never lock the same rows in opposite orders.
            mine = (
                select(items.c.id)
                .where(condition, items.c.id.in_(ids[start : start + 500]))
                .order_by(items.c.id)
            )
            if self.dialect == "postgresql":
                mine = mine.with_for_update(skip_locked=True)
            result = await self._write(
                update(items)
                .where(items.c.id.in_(mine.scalar_subquery()))
                .values(lease_until=self.now() + lease)
            )
            renewed += int(result.rowcount or 0)
        return renewed

    async def next_claimable(self, owner: str) -> float | None:
        """When a claim by ``owner`` could next succeed: seconds from now (0 when it could now),
        or None when no pending item is left outside this owner's own claims.

        A worker that finds nothing to claim asks this to tell "the queue is drained" from
        "others hold the rest": then it waits for their leases, which end early if they finish
        and run out if they died.
        """
        now = self.now()
        free = or_(items.c.claimed_by.is_(None), items.c.lease_until < now)
        statement = select(
            func.count(),
            func.coalesce(func.max(case((free, 1), else_=0)), 0),
            func.min(items.c.lease_until),
        ).where(
            items.c.status == Status.PENDING.value,
            or_(items.c.claimed_by.is_(None), items.c.claimed_by != owner),
        )
        if self.dialect == "postgresql":
            statement = statement.add_columns(now)
        try:
            async with self.connect() as connection:
                row = (await connection.execute(statement)).one()
        except (SQLAlchemyError, OSError) as exc:
            raise ManifestError(f"manifest read failed: {getattr(exc, 'orig', exc)}") from exc
        if not row[0]:
            return None
        if row[1] or row[2] is None:
            return 0.0
        clock = row[3] if self.dialect == "postgresql" else now
        wait: float = (row[2] - clock).total_seconds()
        return max(0.0, wait)

    async def release(self, owner: str, ids: Sequence[int] | None = None) -> None:
        """Give claims back without a result (stopping early)."""
        condition: Any = items.c.claimed_by == owner
        if ids is not None:
            if not ids:
                return
            condition = and_(condition, items.c.id.in_(ids))
        await self._write(update(items).where(condition).values(claimed_by=None, lease_until=None))

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of results in one transaction."""
        if not outcomes:
            return
        now = self._timestamp(utcnow())
        done = Status.DONE
        rows = [
            (
                o.status.value,
                o.url,
                o.attempts,
                o.http_status,
                o.size,
                o.sha256,
                o.error,
                now,
                now if o.status is done else None,
                o.id,
            )
            for o in sorted(outcomes, key=lambda o: o.id)  # one lock order for every writer
        ]
        await self._write(self._driver_sql(_RECORD), rows)

    async def tallies(self) -> dict[str, Tally]:
        """Items and bytes per status."""
        return {
            status: tally
            for (data_set, status), tally in (await self._grouped(by_data_set=False)).items()
            if data_set is None
        }

    async def tallies_by_data_set(self) -> dict[tuple[int | None, str], Tally]:
        """Items and bytes per (data set, status)."""
        return await self._grouped(by_data_set=True)

    async def _grouped(self, *, by_data_set: bool) -> dict[tuple[int | None, str], Tally]:
        statement = tally_statement(by_data_set=by_data_set)
        async with self.connect() as connection:
            rows = (await connection.execute(statement)).all()
        result: dict[tuple[int | None, str], Tally] = {}
        for row in rows:
            key = (int(row[0]), str(row[1])) if by_data_set else (None, str(row[0]))
            result[key] = Tally(items=int(row[-2]), bytes=int(row[-1]))
        return result

    async def rows(
        self, status: str | None = None, *, chunk: int = 5000
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item (optionally of one status) as a dict, streamed in id order."""
        last = 0
        while True:
            condition: Any = items.c.id > last
            if status is not None:
                condition = and_(condition, items.c.status == status)
            async with self.connect() as connection:
                batch = (
                    (
                        await connection.execute(
                            select(items).where(condition).order_by(items.c.id).limit(chunk)
                        )
                    )
                    .mappings()
                    .all()
                )
            if not batch:
                return
            last = batch[-1]["id"]
            for row in batch:
                yield dict(row)

    async def holders(self) -> dict[str, tuple[int, datetime | None]]:
        """Who holds claims right now: owner -> (items, latest lease end)."""
        statement = (
            select(items.c.claimed_by, func.count(), func.max(items.c.lease_until))
            .where(items.c.claimed_by.is_not(None))
            .group_by(items.c.claimed_by)
        )
        async with self.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return {str(r[0]): (int(r[1]), r[2]) for r in rows}


def tally_statement(*, by_data_set: bool) -> Any:
    """Items and summed sizes per status (and data set): answered by ``ix_items_tally`` alone."""
    columns: list[Any] = [items.c.status]
    if by_data_set:
        columns.insert(0, items.c.data_set_id)
    return select(*columns, func.count(), func.coalesce(func.sum(items.c.size), 0)).group_by(
        *columns
    )
