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
from crawler.fetch import Pool, Stop, watch_signals
from crawler.manifest.database import is_sqlite
from crawler.manifest.repository import Outcome
from crawler.pipeline import RunReport, manifest_session, owner_id
from crawler.progress import RunProgress
from crawler.ratelimit import limiter_for

log = structlog.get_logger("crawler.worker")


LOCKED_HINT = (
    "a SQLite manifest serves one process at a time, "
    "several workers need a PostgreSQL manifest (--manifest postgresql://...)"
)


async def run_worker(settings: Settings, *, follow: bool = False) -> RunReport:
    """Fetch pending items until none is left (or, with ``follow``, until a signal)."""
    report = RunReport(command="worker")
    started = time.monotonic()
    stop = Stop()
    async with manifest_session(
        settings, "worker", must_exist=True, locked_hint=LOCKED_HINT
    ) as manifest:
        reclaimed = await manifest.reclaim(exclusive=is_sqlite(settings.manifest_url))
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
                    exclusive=is_sqlite(settings.manifest_url),  # under the output lock
                )
                with fetch_scope:
                    await pool.run()
                outer.cancel_scope.cancel()
        report.absorb(pool, client)
    report.seconds = time.monotonic() - started
    report.interrupted_by = stop.signal
    return report
