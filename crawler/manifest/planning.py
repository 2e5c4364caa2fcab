"""Recording planned items: idempotent on the URL, tagged with the run, one live item per path.

Each chunk of planned items is one transaction of up to six statements:

1. insert the items not yet known (``ref`` is the natural key: a replan adds nothing);
2. tag every planned item with the planning run (``plan_run``), so ``mirror`` and ``sync``
   fetch what their own selection planned and nothing other selections left pending;
3. give failed items of this plan another chance, and revive those an earlier plan had
   superseded (each only when any exist: one probe of the status index);
4. when an item was added or revived, supersede the other items of its path: a setting that
   changes a URL but not a path (quality, colour window, tile size) replaces the old item
   rather than leaving two items fighting over one file.

A no-op replan costs an index lookup per item for steps 1 and 2, and nothing for 3 and 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from crawler.manifest.models import Status, items
from crawler.plan import Item

log = structlog.get_logger("crawler.manifest")

_INSERT_SQLITE = (
    "INSERT INTO items (ref, url, path, kind, data_set_id, image_id, status, attempts, "
    "created_at, updated_at, plan_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (ref) DO NOTHING"
)
SUPERSEDED_BY_PLAN = "superseded: a newer plan gave its path to another URL"
PLANNED_AGAIN = "planned again after being superseded"


async def insert_sqlite(
    connection: AsyncConnection,
    chunk: Sequence[Item],
    url_base: str,
    stamp: Any,
    run: int | None,
) -> int:
    """Plain driver rows; SQLite counts the rows it really inserted."""
    pending = Status.PENDING.value
    rows = [
        (
            item.ref,
            url_base + item.ref,
            item.path,
            item.kind,
            item.data_set_id,
            item.image_id,
            pending,
            0,
            stamp,
            stamp,
            run,
        )
        for item in chunk
    ]
    result = await connection.exec_driver_sql(_INSERT_SQLITE, rows)
    return max(0, int(result.rowcount or 0))


async def insert_postgresql(
    connection: AsyncConnection,
    chunk: Sequence[Item],
    url_base: str,
    now: datetime,
    run: int | None,
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
            "url": url_base + item.ref,
            "path": item.path,
            "kind": item.kind,
            "data_set_id": item.data_set_id,
            "image_id": item.image_id,
            "status": Status.PENDING.value,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
            "plan_run": run,
        }
        for item in chunk
    ]
    return len((await connection.execute(statement, batch)).all())


async def settle_chunk(
    connection: AsyncConnection, chunk: Sequence[Item], added: int, now: datetime, run: int | None
) -> None:
    """Steps 2-4 of the module docstring, after the insert of ``chunk`` added ``added`` items."""
    refs = [item.ref for item in chunk]
    if run is not None and added < len(chunk):  # items inserted just now carry the run already
        await connection.execute(
            update(items)
            .where(items.c.ref.in_(refs), or_(items.c.plan_run.is_(None), items.c.plan_run != run))
            .values(plan_run=run)
        )
    if await _any_with(connection, Status.FAILED):
        # A failed item planned again gets another chance; other selections' failures stay.
        await connection.execute(
            update(items)
            .where(items.c.status == Status.FAILED.value, items.c.ref.in_(refs))
            .values(status=Status.PENDING.value, updated_at=now)
        )
    revived = 0
    if await _any_with(connection, Status.SUPERSEDED):
        result = await connection.execute(
            update(items)
            .where(items.c.status == Status.SUPERSEDED.value, items.c.ref.in_(refs))
            .values(
                status=Status.PENDING.value,
                error=PLANNED_AGAIN,
                size=None,
                sha256=None,
                problem=None,
                updated_at=now,
            )
        )
        revived = int(result.rowcount or 0)
    if not added and not revived:
        return  # every item was live before: no path changed hands
    result = await connection.execute(
        update(items)
        .where(
            items.c.path.in_(sorted({item.path for item in chunk})),
            items.c.ref.not_in(refs),
            items.c.status != Status.SUPERSEDED.value,
        )
        .values(
            status=Status.SUPERSEDED.value,
            error=SUPERSEDED_BY_PLAN,
            claimed_by=None,
            lease_until=None,
            updated_at=now,
        )
    )
    if superseded := int(result.rowcount or 0):
        log.info("plan.superseded", items=superseded, revived=revived)


async def _any_with(connection: AsyncConnection, status: Status) -> bool:
    """One probe of the status index: most manifests hold no failed or superseded item."""
    statement = select(items.c.id).where(items.c.status == status.value).limit(1)
    return (await connection.execute(statement)).first() is not None
