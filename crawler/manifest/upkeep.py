"""Keeping a mirror honest: resuming a run, sync's removals and rechecks, verify's flags."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from crawler.manifest.base import (
    CHUNK,
    ManifestBase,
)
from crawler.manifest.models import Status, items
from crawler.retry import utcnow

T = TypeVar("T")

_DONE_FILES = (
    "SELECT id, path, COALESCE(size, 0) FROM items WHERE status = ? AND id > ? ORDER BY id LIMIT ?"
)
_DONE_DIGESTS = (
    "SELECT id, path, COALESCE(size, 0), sha256, kind FROM items"
    " WHERE status = ? AND id > ? ORDER BY id LIMIT ?"
)


class Upkeep(ManifestBase):
    """Resume, sync and verify bookkeeping."""

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
        """(id, path, size) of done items in id order, a chunk at a time.

        The resume check of every run reads them all, beside planning (see ``_done_rows``).
        """
        async for rows in self._done_rows(_DONE_FILES, chunk):
            yield cast(list[tuple[int, str, int]], rows)

    async def done_digests(
        self, chunk: int = 20000
    ) -> AsyncIterator[list[tuple[int, str, int, str | None, str]]]:
        """(id, path, size, sha256, kind) of done items in id order, a chunk at a time.

        ``verify`` hashes the files on worker processes while it reads these (see ``_done_rows``).
        """
        async for rows in self._done_rows(_DONE_DIGESTS, chunk):
            yield cast(list[tuple[int, str, int, str | None, str]], rows)

    async def _done_rows(self, statement: str, chunk: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The rows of ``statement`` (done items past an id, in id order, ``chunk`` at a time),
        one read per chunk, as plain tuples from the driver's cursor.

        These reads run beside work that needs the same cores (a sync decoding its pages,
        verify's hashing processes): SQLAlchemy's Row objects, and tuples made from them,
        doubled the CPU of reading 100,000 rows (docs/BENCHMARKS.md, issue 16).
        """
        sql = self._driver_sql(statement)
        last = 0
        while True:

            async def work(connection: AsyncConnection, after: int = last) -> list[tuple[Any, ...]]:
                result = await connection.exec_driver_sql(sql, (Status.DONE.value, after, chunk))
                try:  # asyncpg's records are tuple-like, SQLite's rows tuples already
                    return list(map(tuple, result.cursor.fetchall()))
                finally:
                    result.close()

            rows = await self._run(work, write=False)
            if not rows:
                return
            last = rows[-1][0]
            yield rows

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

    async def adopt(self, ids: Sequence[int], data_set_ids: Sequence[int], run: int) -> list[int]:
        """Tag with ``run`` those of ``ids`` that are pending and belong to ``data_set_ids``;
        their ids. The resume check sends done items of intact-looking data sets back to the
        queue; when the planner skipped such a data set (nothing changed), nothing else tags
        them for the run, and a run fetches only what it tagged."""
        found: list[int] = []
        wanted = set(data_set_ids)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            rows = await self.read(
                select(items.c.id, items.c.data_set_id).where(
                    items.c.id.in_(chunk), items.c.status == Status.PENDING.value
                )
            )
            mine = [int(r[0]) for r in rows if int(r[1]) in wanted]
            if mine:
                await self.execute(update(items).where(items.c.id.in_(mine)).values(plan_run=run))
            found += mine
        return found

    async def requeue_flagged(self) -> list[int]:
        """Done items that ``verify`` flagged go back to the queue; their ids."""
        flagged = and_(items.c.status == Status.DONE.value, items.c.problem.is_not(None))
        ids = [int(row[0]) for row in await self.read(select(items.c.id).where(flagged))]
        await self.mark_pending(ids, "file missing or corrupt on disk (verify)")
        return ids

    async def image_items(
        self, data_set_ids: Sequence[int]
    ) -> list[tuple[int, int, int, str, str]]:
        """(id, data set id, image id, path, status) of the image items of these data sets:
        one read for a sync's reconciliation instead of two statements per data set."""
        found: list[tuple[int, int, int, str, str]] = []
        for start in range(0, len(data_set_ids), CHUNK):
            # The columns are NOT NULL integers and strings: the rows are used as they come
            # (converting 100,000 of them cost a no-op sync a fifth of a second).
            found += await self.read(
                select(
                    items.c.id, items.c.data_set_id, items.c.image_id, items.c.path, items.c.status
                ).where(
                    items.c.data_set_id.in_(data_set_ids[start : start + CHUNK]),
                    items.c.image_id.is_not(None),
                    items.c.status != Status.SUPERSEDED.value,
                )
            )
        return found

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
