"""Reading the manifest for people and monitors: counts, rows, holders, integrity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from crawler.errors import ManifestError
from crawler.manifest.base import (
    ManifestBase,
    Tally,
)
from crawler.manifest.models import items

T = TypeVar("T")


class Reading(ManifestBase):
    """What ``ls``, ``status`` and the reports read."""

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

    async def done_since(self, since: datetime) -> tuple[Tally, datetime | None]:
        """Items and bytes recorded done at or after ``since`` (naive UTC), and the oldest of
        their times: what a live rate is computed from."""
        rows = await self.read(
            select(
                func.count(), func.coalesce(func.sum(items.c.size), 0), func.min(items.c.fetched_at)
            ).where(items.c.status == "done", items.c.fetched_at >= since)
        )
        count, nbytes, oldest = rows[0]
        return Tally(items=int(count), bytes=int(nbytes)), oldest

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


def tally_statement(*, by_data_set: bool) -> Any:
    """Items and summed sizes per status (and data set): answered by ``ix_items_tally`` alone."""
    columns: list[Any] = [items.c.status]
    if by_data_set:
        columns.insert(0, items.c.data_set_id)
    return select(*columns, func.count(), func.coalesce(func.sum(items.c.size), 0)).group_by(
        *columns
    )
