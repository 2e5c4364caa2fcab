"""Manifest operations: idempotent planning, claims with leases, batched records, reports.

The same statements serve SQLite and Postgres: claims are one UPDATE ... RETURNING over a
sub-select that takes ``FOR UPDATE SKIP LOCKED`` where the backend has it, so several
workers can share one Postgres manifest without a coordinator. On Postgres, leases are measured
by the database server's clock, so workers on hosts whose clocks disagree still agree on them.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from sqlalchemy import DateTime, and_, bindparam, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crawler.errors import ManifestError
from crawler.manifest import errors, planning
from crawler.manifest.models import Status, items
from crawler.plan import Item
from crawler.redact import mask_url
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


class Manifest:
    """A handle on one manifest database; every method is one short unit of work.

    Every statement runs through ``_run``: errors are translated once there, deadlock victims
    run again and a lost connection is waited for (crawler/manifest/errors.py). Nothing outside
    the ``crawler.manifest`` package writes SQL.
    """

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

    # -- planning ------------------------------------------------------------------------

    async def add_items(
        self, planned: Iterable[Item], api_base: str, *, run: int | None = None
    ) -> int:
        """Record planned items; returns how many were new (crawler/manifest/planning.py).

        Items already known (same ref) are left as they are, but tagged with ``run`` and
        revived if they had been superseded; the other items of a path that changes hands are
        superseded. A chunk per transaction: a stop keeps the chunks already written. The
        stored URL never carries a password.
        """
        url_base = mask_url(api_base)
        now = utcnow()
        stamp = self._timestamp(now)
        added = 0
        iterator = iter(planned)
        while chunk := list(itertools.islice(iterator, INSERT_CHUNK)):

            async def work(connection: AsyncConnection, rows: list[Item] = chunk) -> int:
                if self.dialect == "sqlite":
                    new = await planning.insert_sqlite(connection, rows, url_base, stamp, run)
                else:
                    new = await planning.insert_postgresql(connection, rows, url_base, now, run)
                await planning.settle_chunk(connection, rows, new, now, run)
                return new

            added += await self._run(work, write=True)
        return added

    # -- starting and resuming -----------------------------------------------------------

    async def reopen(self, *, exclusive: bool) -> int:
        """Start a run: failed items get another chance, stale claims are released.

        ``exclusive`` (this process holds the output lock) releases every claim; otherwise
        only claims whose lease has expired. Returns how many failed items were reopened.
        """
        result = await self.execute(
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
        result = await self.execute(
            update(items).where(stale).values(claimed_by=None, lease_until=None)
        )
        return int(result.rowcount or 0)

    async def done_files(self, chunk: int = 20000) -> AsyncIterator[list[tuple[int, str, int]]]:
        """(id, path, size) of done items in id order, a chunk at a time."""
        last = 0
        while True:
            rows = await self.read(
                select(items.c.id, items.c.path, items.c.size)
                .where(items.c.status == Status.DONE.value, items.c.id > last)
                .order_by(items.c.id)
                .limit(chunk)
            )
            if not rows:
                return
            last = rows[-1][0]
            yield [(int(r[0]), str(r[1]), int(r[2] or 0)) for r in rows]

    async def mark_pending(self, ids: Sequence[int], reason: str) -> None:
        """Send items back to the queue (their file is gone or wrong)."""
        now = utcnow()
        for start in range(0, len(ids), CHUNK):
            await self.execute(
                update(items)
                .where(items.c.id.in_(ids[start : start + CHUNK]))
                .values(status=Status.PENDING.value, error=reason, problem=None, updated_at=now)
            )

    async def flag_problems(self, problems: Sequence[tuple[int, str]]) -> None:
        """``verify``'s findings: (id, missing | corrupt). The items stay done, so verify keeps
        reporting them, and the next mirror or sync fetches them again (``requeue_flagged``)."""
        statement = (
            update(items).where(items.c.id == bindparam("b_id")).values(problem=bindparam("b_pr"))
        )
        for start in range(0, len(problems), CHUNK):
            chunk = problems[start : start + CHUNK]
            await self.execute(statement, [{"b_id": i, "b_pr": p} for i, p in chunk])

    async def requeue_flagged(self) -> list[int]:
        """Done items that ``verify`` flagged go back to the queue; their ids."""
        flagged = and_(items.c.status == Status.DONE.value, items.c.problem.is_not(None))
        ids = [int(row[0]) for row in await self.read(select(items.c.id).where(flagged))]
        await self.mark_pending(ids, "file missing or corrupt on disk (verify)")
        return ids

    # -- sync ----------------------------------------------------------------------------

    async def listed_items(self, data_set_id: int) -> list[tuple[int, str, int]]:
        """(id, path, image id) of a data set's image items that are not removed."""
        rows = await self.read(
            select(items.c.id, items.c.path, items.c.image_id).where(
                items.c.data_set_id == data_set_id,
                items.c.image_id.is_not(None),
                items.c.status.not_in([Status.REMOVED.value, Status.SUPERSEDED.value]),
            )
        )
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def mark_removed(self, ids: Sequence[int], reason: str) -> None:
        """Items whose image the API no longer lists."""
        for start in range(0, len(ids), CHUNK):
            await self.execute(
                update(items)
                .where(items.c.id.in_(ids[start : start + CHUNK]))
                .values(
                    status=Status.REMOVED.value,
                    error=reason,
                    claimed_by=None,
                    lease_until=None,
                    updated_at=utcnow(),
                )
            )

    async def reopen_listed(self, data_set_id: int, image_ids: Sequence[int]) -> int:
        """Items flagged removed whose image is listed again go back to the queue."""
        reopened = 0
        for start in range(0, len(image_ids), CHUNK):
            result = await self.execute(
                update(items)
                .where(
                    items.c.data_set_id == data_set_id,
                    items.c.status == Status.REMOVED.value,
                    items.c.image_id.in_(image_ids[start : start + CHUNK]),
                )
                .values(status=Status.PENDING.value, error=None, updated_at=utcnow())
            )
            reopened += int(result.rowcount or 0)
        return reopened

    async def mark_for_recheck(self, data_set_ids: Sequence[int], run: int | None = None) -> int:
        """Done items go back to pending, remembering their checksum to compare afterwards.

        With ``run``, only the items that run planned (the sync's own selection)."""
        condition = and_(items.c.status == Status.DONE.value, items.c.data_set_id.in_(data_set_ids))
        if run is not None:
            condition = and_(condition, items.c.plan_run == run)
        result = await self.execute(
            update(items)
            .where(condition)
            .values(status=Status.PENDING.value, previous_sha256=items.c.sha256)
        )
        return int(result.rowcount or 0)

    async def count_changes(self) -> tuple[int, int]:
        """(changed, unchanged) among rechecked items that completed; old checksums forgotten."""
        rechecked = and_(items.c.status == Status.DONE.value, items.c.previous_sha256.is_not(None))
        same = items.c.previous_sha256 == items.c.sha256

        async def work(connection: AsyncConnection) -> tuple[int, int]:
            counted = select(func.count()).where(rechecked)
            changed = (await connection.execute(counted.where(~same))).scalar_one()
            unchanged = (await connection.execute(counted.where(same))).scalar_one()
            await connection.execute(update(items).where(rechecked).values(previous_sha256=None))
            return int(changed), int(unchanged)

        return await self._run(work, write=True)

    async def done_refs(self, refs: Sequence[str]) -> set[str]:
        """Those of ``refs`` whose item is done (a dry run leaves them out)."""
        found: set[str] = set()
        for start in range(0, len(refs), CHUNK):
            rows = await self.read(
                select(items.c.ref).where(
                    items.c.status == Status.DONE.value,
                    items.c.ref.in_(refs[start : start + CHUNK]),
                )
            )
            found.update(str(row[0]) for row in rows)
        return found

    async def count_done(self, data_set_ids: Sequence[int]) -> int:
        """Done items of the given data sets."""
        rows = await self.read(
            select(func.count()).where(
                items.c.status == Status.DONE.value, items.c.data_set_id.in_(data_set_ids)
            )
        )
        return int(rows[0][0])

    # -- fetching ------------------------------------------------------------------------

    async def claim(
        self, owner: str, limit: int, lease: timedelta, *, run: int | None = None
    ) -> list[Claimed]:
        """Take up to ``limit`` pending items nobody holds, in id order, under a lease; with
        ``run``, only items that run planned."""
        now = self.now()
        free = select(items.c.id).where(
            items.c.status == Status.PENDING.value,
            or_(items.c.claimed_by.is_(None), items.c.lease_until < now),
            *_of_run(run),
        )
        free = free.order_by(items.c.id).limit(limit)
        if self.dialect == "postgresql":
            free = free.with_for_update(skip_locked=True)
        statement = (
            update(items)
            .where(items.c.id.in_(free.scalar_subquery()))
            .values(claimed_by=owner, lease_until=now + lease)
            .returning(*CLAIMED_COLUMNS)
        )
        result = await self.execute(statement)
        return [Claimed(*row) for row in sorted(result.all(), key=lambda r: r[0])]

    async def pending(self, *, after: int, limit: int, run: int | None = None) -> list[Claimed]:
        """Pending items with id > ``after``, in id order, without claiming them; with ``run``,
        only items that run planned.

        For a process alone on its manifest (the output lock): nobody else takes items, so a
        read suffices where a claim writes a row and an index entry per item.
        """
        sql = _PENDING if run is None else _PENDING_OF_RUN
        params = (
            (Status.PENDING.value, after, limit)
            if run is None
            else (Status.PENDING.value, after, run, limit)
        )

        async def work(connection: AsyncConnection) -> list[Claimed]:
            result = await connection.exec_driver_sql(self._driver_sql(sql), params)
            return [Claimed(*tuple(row)) for row in result.all()]

        return await self._run(work, write=False)

    async def pending_in(self, ids: Sequence[int], *, run: int | None = None) -> list[Claimed]:
        """Those of ``ids`` that are pending (and planned by ``run``), in id order, unclaimed."""
        found: list[Claimed] = []
        for start in range(0, len(ids), CHUNK):
            rows = await self.read(
                select(*CLAIMED_COLUMNS)
                .where(
                    items.c.status == Status.PENDING.value,
                    items.c.id.in_(ids[start : start + CHUNK]),
                    *_of_run(run),
                )
                .order_by(items.c.id)
            )
            found.extend(Claimed(*tuple(row)) for row in rows)
        return found

    async def renew(self, owner: str, lease: timedelta, ids: Sequence[int]) -> int:
        """Extend the lease on those of ``ids`` this owner still holds.

        Returns how many leases were extended: fewer than ``ids`` means some were lost (the
        lease ran out and another worker took the item).
        """
        condition = and_(items.c.claimed_by == owner, items.c.status == Status.PENDING.value)
        renewed = 0
        for start in range(0, len(ids), CHUNK):
            # Rows a concurrent record() holds are being settled: skip them rather than wait,
            # so renewing and recording never lock the same rows in opposite orders.
            mine = (
                select(items.c.id)
                .where(condition, items.c.id.in_(ids[start : start + CHUNK]))
                .order_by(items.c.id)
            )
            if self.dialect == "postgresql":
                mine = mine.with_for_update(skip_locked=True)
            result = await self.execute(
                update(items)
                .where(items.c.id.in_(mine.scalar_subquery()))
                .values(lease_until=self.now() + lease)
            )
            renewed += int(result.rowcount or 0)
        return renewed

    async def next_claimable(self, owner: str, *, run: int | None = None) -> float | None:
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
            *_of_run(run),
        )
        if self.dialect == "postgresql":
            statement = statement.add_columns(now)
        row = (await self.read(statement))[0]
        if not row[0]:
            return None
        if row[1] or row[2] is None:
            return 0.0
        clock = row[3] if self.dialect == "postgresql" else now
        wait: float = (row[2] - clock).total_seconds()
        return max(0.0, wait)

    async def other_pending(self, run: int) -> int:
        """Pending items that ``run`` did not plan: left by other selections, for ``worker``."""
        rows = await self.read(
            select(func.count()).where(
                items.c.status == Status.PENDING.value,
                or_(items.c.plan_run.is_(None), items.c.plan_run != run),
            )
        )
        return int(rows[0][0])

    async def release(self, owner: str) -> None:
        """Give back every claim of ``owner`` without a result (a stopping run)."""
        await self.execute(
            update(items)
            .where(items.c.claimed_by == owner)
            .values(claimed_by=None, lease_until=None)
        )

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
        await self.execute(self._driver_sql(_RECORD), rows)

    # -- reading -------------------------------------------------------------------------

    async def check_integrity(self) -> None:
        """Raise ManifestError when a SQLite manifest's pages are damaged.

        ``PRAGMA quick_check`` reads every page once (about a second per million items): the
        counts ``status`` gives come from one index alone and would look fine over a damaged
        table. PostgreSQL guards its own pages; nothing to do there.
        """
        if self.dialect != "sqlite":
            return

        async def work(connection: AsyncConnection) -> list[str]:
            result = await connection.exec_driver_sql("PRAGMA quick_check(5)")
            return [str(row[0]) for row in result.all()]

        found = await self._run(work, write=False)
        if found != ["ok"]:
            where = self.engine.url.database
            problem = found[0] if found else "no answer"
            raise ManifestError(
                f"manifest {where} is damaged ({problem}): restore it from a backup, or move it "
                "aside and run 'allen-mirror mirror' to rebuild it"
            )

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
        rows = await self.read(tally_statement(by_data_set=by_data_set))
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
            batch = await self.read_mappings(
                select(items).where(condition).order_by(items.c.id).limit(chunk)
            )
            if not batch:
                return
            last = batch[-1]["id"]
            for row in batch:
                yield row

    async def holders(self) -> dict[str, tuple[int, datetime | None]]:
        """Who holds claims right now: owner -> (items, latest lease end)."""
        rows = await self.read(
            select(items.c.claimed_by, func.count(), func.max(items.c.lease_until))
            .where(items.c.claimed_by.is_not(None))
            .group_by(items.c.claimed_by)
        )
        return {str(r[0]): (int(r[1]), r[2]) for r in rows}


def _of_run(run: int | None) -> tuple[Any, ...]:
    """The condition that scopes a query to the items ``run`` planned (none without one)."""
    return () if run is None else (items.c.plan_run == run,)


def tally_statement(*, by_data_set: bool) -> Any:
    """Items and summed sizes per status (and data set): answered by ``ix_items_tally`` alone."""
    columns: list[Any] = [items.c.status]
    if by_data_set:
        columns.insert(0, items.c.data_set_id)
    return select(*columns, func.count(), func.coalesce(func.sum(items.c.size), 0)).group_by(
        *columns
    )
