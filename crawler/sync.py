"""Sync: re-enumerate, fetch only what is new, flag what the API no longer lists, recheck on demand.

Planning runs to completion before fetching so that removal is decided on the full, current
listing: an item whose image the API no longer lists for its data set becomes ``removed``
(its file kept, or deleted with ``--prune``). ``--recheck`` re-downloads done items and counts
those whose bytes changed; each is replaced atomically like any other download.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from crawler.config import Settings
from crawler.manifest import Manifest
from crawler.pipeline import (
    Tools,
    count_pending,
    fetch_pending,
    items_to_fetch,
    make_source,
    note_other_pending,
    prepare,
    run_tools,
    seed_targets,
)
from crawler.planner import Planner
from crawler.reconcile import listing_changes
from crawler.reports import recorded_run
from crawler.selection import Selection
from crawler.session import RunReport, owner_id, run_session
from crawler.signals import Stop
from crawler.source import Planning

if TYPE_CHECKING:
    from crawler.metrics import RunMetrics

log = structlog.get_logger("crawler.sync")

REMOVED_KEPT = "no longer listed by the API; file kept"
REMOVED_PRUNED = "no longer listed by the API; file deleted (--prune)"


async def reconcile(
    manifest: Manifest, tools: Tools, listings: dict[int, set[int]], *, prune: bool
) -> tuple[int, int]:
    """Items of images listed again go back to the queue; items of vanished images become
    removed (with ``prune``, their files are deleted). Returns (removed, pruned)."""
    removed = pruned = 0
    changes = listing_changes(await manifest.image_items(sorted(listings)), listings)
    for data_set_id in sorted(changes.reopen):
        await manifest.reopen_listed(data_set_id, sorted(listings[data_set_id]))
    for data_set_id, gone in sorted(changes.gone.items()):
        if prune:
            pruned += await tools.store.delete([path for _, path in gone])
        await manifest.mark_removed([i for i, _ in gone], REMOVED_PRUNED if prune else REMOVED_KEPT)
        removed += len(gone)
        log.info("sync.removed", data_set_id=data_set_id, items=len(gone), pruned=prune)
    return removed, pruned


async def run_sync(
    settings: Settings,
    selection: Selection,
    *,
    prune: bool = False,
    recheck: bool = False,
    report_file: Path | None = None,
    metrics: RunMetrics | None = None,
) -> RunReport:
    """Bring a mirror up to date with the API."""
    report = RunReport(command="sync")
    started = time.monotonic()
    stop = Stop()
    async with (
        run_session(settings, "sync") as manifest,
        recorded_run(manifest, settings, selection.describe(), report, report_file) as run,
    ):
        try:
            await manifest.reclaim(exclusive=settings.exclusive)
            async with run_tools(settings, manifest, stop, "sync", metrics) as tools:
                # --recheck re-downloads every item of the selection: none may be skipped.
                planner = Planner(
                    settings,
                    manifest,
                    tools.client,
                    report,
                    run=run,
                    store=tools.store,
                    skip_unchanged=not recheck,
                )
                targets = await seed_targets(planner, selection, stop)
                await prepare(planner, targets, tools, manifest, report)
                if stop.requested:
                    return report
                report.removed, report.pruned = await reconcile(
                    manifest, tools, planner.listed, prune=prune
                )
                listed = sorted({*planner.listed, *planner.settled})  # every data set listed
                if recheck:
                    rechecking = await manifest.mark_for_recheck(listed, run)
                    log.info("sync.recheck", items=rechecking)
                tools.progress.set_total(await items_to_fetch(manifest, report))
                owner = owner_id()
                planning = Planning(finished=True)
                source = make_source(
                    settings, manifest, tools.store, owner, planning, stop, run=run
                )
                stats = await fetch_pending(
                    settings, manifest, tools, source, owner=owner, command="sync"
                )
                report.absorb(stats, tools.client.requests, tools.client.retries)
            await note_other_pending(manifest, report, run)
            report.remaining = await count_pending(manifest) - report.other_pending
            if recheck:
                report.changed, report.unchanged = await manifest.count_changes()
            else:  # done now = kept as they were + downloaded by this run
                report.unchanged = await manifest.count_done(listed) - report.done
        finally:
            report.seconds = time.monotonic() - started
            report.interrupted_by = stop.signal
    return report
