"""``allen-mirror worker``: fetch what others planned, beside any number of other workers.

A worker plans nothing. It claims pending items from the manifest in batches, under a lease,
fetches and records them with the same pool as ``mirror``, and leaves when no pending item is
left (``--follow``: keeps polling until a signal). Several workers share one Postgres manifest
as their queue (``FOR UPDATE SKIP LOCKED``), its clock (leases) and its rate budget
(``ratelimit``). A SQLite manifest serves one process at a time: a worker takes the output lock
like ``mirror`` does, and a second one is refused (exit 3).
"""

from __future__ import annotations

import time

import anyio
import structlog

from crawler.client import ApiClient
from crawler.config import Settings
from crawler.errors import LockedError
from crawler.fetch import Pool, Stop, watch_signals
from crawler.listing import check_manifest_exists
from crawler.lock import OutputLock
from crawler.manifest import open_manifest
from crawler.manifest.database import is_sqlite
from crawler.manifest.repository import Outcome
from crawler.pipeline import RunReport, check_output_dir, owner_id
from crawler.progress import RunProgress
from crawler.ratelimit import limiter_for

log = structlog.get_logger("crawler.worker")


def _lock(settings: Settings) -> OutputLock | None:
    """SQLite: one process per output directory; the refusal says how to run several."""
    if not is_sqlite(settings.manifest_url):
        return None
    check_manifest_exists(settings.manifest_url)
    lock = OutputLock(settings.out, "worker")
    try:
        lock.acquire()
    except LockedError as exc:
        raise LockedError(
            f"{exc}; a SQLite manifest serves one process at a time, "
            "several workers need a PostgreSQL manifest (--manifest postgresql://...)"
        ) from None
    return lock


async def run_worker(settings: Settings, *, follow: bool = False) -> RunReport:
    """Fetch pending items until none is left (or, with ``follow``, until a signal)."""
    report = RunReport(command="worker")
    started = time.monotonic()
    check_output_dir(settings.out)
    lock = _lock(settings)
    stop = Stop()
    try:
        manifest = await open_manifest(settings.manifest_url)
        try:
            reclaimed = await manifest.reclaim(exclusive=lock is not None)
            owner = owner_id()
            log.info("worker.start", owner=owner, reclaimed=reclaimed, follow=follow)
            planning_done = anyio.Event()
            planning_done.set()  # a worker plans nothing: what is pending is the whole job
            with RunProgress(settings.progress, "worker") as progress:

                def on_outcome(outcome: Outcome) -> None:
                    progress.advance(1, outcome.size or 0)

                limiter = limiter_for(settings, manifest)
                async with (
                    ApiClient.open(settings, limiter) as client,
                    anyio.create_task_group() as outer,
                ):
                    fetch_scope = anyio.CancelScope()
                    outer.start_soon(watch_signals, stop, fetch_scope, settings.grace_seconds)
                    pool = Pool(
                        settings,
                        manifest,
                        client,
                        owner,
                        stop=stop,
                        planning_done=planning_done,
                        on_outcome=on_outcome,
                        command="worker",
                        follow=follow,
                    )
                    with fetch_scope:
                        await pool.run()
                    outer.cancel_scope.cancel()
            report.done = pool.stats.done
            report.failed = pool.stats.failed
            report.bytes = pool.stats.bytes
            report.failures = pool.stats.failures
            report.requests = client.requests
            report.retries = client.retries
        finally:
            with anyio.CancelScope(shield=True):
                await manifest.close()
    finally:
        if lock:
            lock.release()
    report.seconds = time.monotonic() - started
    report.interrupted_by = stop.signal
    return report
