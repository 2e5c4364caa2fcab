"""The work queue: planned items in, claims and pending reads out, outcomes recorded.

Claims are one UPDATE ... RETURNING over a sub-select that takes ``FOR UPDATE SKIP LOCKED``
where the backend has it, so several workers share one Postgres manifest without a
coordinator; leases are measured by the database server's clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from crawler.manifest import planning
from crawler.manifest.base import (
    _PENDING,
    _PENDING_OF_RUN,
    _RECORD,
    CHUNK,
    CLAIMED_COLUMNS,
    INSERT_CHUNK,
    Claimed,
    ManifestBase,
    Outcome,
    of_run,
)
from crawler.manifest.models import Status, items
from crawler.plan import Item
from crawler.redact import mask_url
from crawler.retry import utcnow

T = TypeVar("T")


class Queue(ManifestBase):
    """Planning, taking and recording items."""

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

    async def claim(
        self, owner: str, limit: int, lease: timedelta, *, run: int | None = None
    ) -> list[Claimed]:
        """Take up to ``limit`` pending items nobody holds, in id order, under a lease; with
        ``run``, only items that run planned."""
        now = self.now()
        free = select(items.c.id).where(
            items.c.status == Status.PENDING.value,
            or_(items.c.claimed_by.is_(None), items.c.lease_until < now),
            *of_run(run),
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
                    *of_run(run),
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
            *of_run(run),
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

    async def count_pending(self) -> int:
        """Pending items, all selections: the queue's depth (an index range, not a scan)."""
        rows = await self.read(select(func.count()).where(items.c.status == Status.PENDING.value))
        return int(rows[0][0])

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
