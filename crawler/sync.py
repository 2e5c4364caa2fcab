"""Sync: re-enumerate, fetch only what is new, flag what the API no longer lists, recheck on demand.

Planning runs to completion before fetching so that removal is decided on the full, current
listing: an item whose image the API no longer lists for its data set becomes ``removed``
(its file kept, or deleted with ``--prune``). ``--recheck`` re-downloads done items and counts
those whose bytes changed; each is replaced atomically like any other download.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import structlog
from sqlalchemy import and_, func, select, update

from crawler.config import Settings
from crawler.manifest import Manifest, Status
from crawler.manifest.models import items
from crawler.pipeline import RunReport, Selection, run_mirror
from crawler.retry import utcnow

log = structlog.get_logger("crawler.sync")

REMOVED_KEPT = "no longer listed by the API; file kept"
REMOVED_PRUNED = "no longer listed by the API; file deleted (--prune)"


def delete_files(root: Path, paths: list[str]) -> int:
    """Delete files under root (blocking); returns how many existed."""
    count = 0
    for relative in paths:
        try:
            (root / relative).unlink()
            count += 1
        except FileNotFoundError:
            continue
    return count


async def flag_removed(
    manifest: Manifest, settings: Settings, listings: dict[int, set[int]], *, prune: bool
) -> tuple[int, int]:
    """Mark items of vanished images removed; with prune, delete their files. Returns counts."""
    removed = pruned = 0
    for data_set_id, listed in listings.items():
        async with manifest.connect() as connection:
            rows = (
                await connection.execute(
                    select(items.c.id, items.c.path, items.c.image_id).where(
                        items.c.data_set_id == data_set_id,
                        items.c.image_id.is_not(None),
                        items.c.status != Status.REMOVED.value,
                    )
                )
            ).all()
        gone = [(int(r[0]), str(r[1])) for r in rows if int(r[2]) not in listed]
        if not gone:
            continue
        if prune:
            pruned += await anyio.to_thread.run_sync(
                delete_files, settings.out, [p for _, p in gone]
            )
        ids = [item_id for item_id, _ in gone]
        for start in range(0, len(ids), 500):
            async with manifest.begin() as connection:
                await connection.execute(
                    update(items)
                    .where(items.c.id.in_(ids[start : start + 500]))
                    .values(
                        status=Status.REMOVED.value,
                        error=REMOVED_PRUNED if prune else REMOVED_KEPT,
                        claimed_by=None,
                        lease_until=None,
                        updated_at=utcnow(),
                    )
                )
        removed += len(gone)
        log.info("sync.removed", data_set_id=data_set_id, items=len(gone), pruned=prune)
    return removed, pruned


async def reopen_listed_again(manifest: Manifest, listings: dict[int, set[int]]) -> int:
    """Items flagged removed whose image is listed again go back to the queue."""
    reopened = 0
    for data_set_id, listed in listings.items():
        if not listed:
            continue
        async with manifest.begin() as connection:
            result = await connection.execute(
                update(items)
                .where(
                    items.c.data_set_id == data_set_id,
                    items.c.status == Status.REMOVED.value,
                    items.c.image_id.in_(sorted(listed)),
                )
                .values(status=Status.PENDING.value, error=None, updated_at=utcnow())
            )
            reopened += int(result.rowcount or 0)
    return reopened


async def mark_for_recheck(manifest: Manifest, data_set_ids: list[int]) -> int:
    """Done items go back to pending, remembering their checksum to compare afterwards."""
    async with manifest.begin() as connection:
        result = await connection.execute(
            update(items)
            .where(items.c.status == Status.DONE.value, items.c.data_set_id.in_(data_set_ids))
            .values(status=Status.PENDING.value, previous_sha256=items.c.sha256)
        )
    return int(result.rowcount or 0)


async def count_changes(manifest: Manifest) -> tuple[int, int]:
    """(changed, unchanged) among rechecked items that completed; then forget old checksums."""
    rechecked = and_(items.c.status == Status.DONE.value, items.c.previous_sha256.is_not(None))
    async with manifest.begin() as connection:
        changed = (
            await connection.execute(
                select(func.count()).where(rechecked, items.c.previous_sha256 != items.c.sha256)
            )
        ).scalar_one()
        unchanged = (
            await connection.execute(
                select(func.count()).where(rechecked, items.c.previous_sha256 == items.c.sha256)
            )
        ).scalar_one()
        await connection.execute(update(items).where(rechecked).values(previous_sha256=None))
    return int(changed), int(unchanged)


async def count_done(manifest: Manifest, data_set_ids: list[int]) -> int:
    """Done items of the given data sets."""
    async with manifest.connect() as connection:
        result = await connection.execute(
            select(func.count()).where(
                items.c.status == Status.DONE.value, items.c.data_set_id.in_(data_set_ids)
            )
        )
    return int(result.scalar_one())


async def run_sync(
    settings: Settings,
    selection: Selection,
    *,
    prune: bool = False,
    recheck: bool = False,
    report_file: Path | None = None,
) -> RunReport:
    """Bring a mirror up to date with the API."""

    async def before_fetch(manifest: Manifest, report: RunReport) -> None:
        await reopen_listed_again(manifest, report.listed)
        report.removed, report.pruned = await flag_removed(
            manifest, settings, report.listed, prune=prune
        )
        if recheck:
            rechecking = await mark_for_recheck(manifest, sorted(report.listed))
            log.info("sync.recheck", items=rechecking)

    async def after_fetch(manifest: Manifest, report: RunReport) -> None:
        if recheck:
            report.changed, report.unchanged = await count_changes(manifest)
        else:
            # done now = kept as they were + downloaded by this run
            report.unchanged = await count_done(manifest, sorted(report.listed)) - report.done

    return await run_mirror(
        settings,
        selection,
        command="sync",
        before_fetch=before_fetch,
        after_fetch=after_fetch,
        report_file=report_file,
    )
