"""``allen-mirror worker``: fetch what others planned, beside any number of other workers.

A worker plans nothing. It takes pending items from the manifest (claims under a lease on a
shared PostgreSQL manifest), fetches and records them with the same stages as ``mirror``, and
leaves when no pending item is left (``--follow``: keeps polling until a signal). A SQLite
manifest serves one process at a time: a worker takes the output lock like ``mirror`` does, and
a second one is refused (exit 3).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from crawler.config import Settings
from crawler.pipeline import count_pending, fetch_pending, make_source, run_tools
from crawler.reports import recorded_run
from crawler.session import RunReport, owner_id, run_session
from crawler.signals import Stop
from crawler.source import Planning

if TYPE_CHECKING:
    from crawler.metrics import RunMetrics

log = structlog.get_logger("crawler.worker")

LOCKED_HINT = (
    "a SQLite manifest serves one process at a time, "
    "several workers need a PostgreSQL manifest (--manifest postgresql://...)"
)


async def run_worker(
    settings: Settings, *, follow: bool = False, metrics: RunMetrics | None = None
) -> RunReport:
    """Fetch pending items until none is left (or, with ``follow``, until a signal)."""
    report = RunReport(command="worker")
    started = time.monotonic()
    stop = Stop()
    async with (
        run_session(settings, "worker", must_exist=True, locked_hint=LOCKED_HINT) as manifest,
        recorded_run(manifest, settings, {}, report, None),
    ):
        reclaimed = await manifest.reclaim(exclusive=settings.exclusive)
        owner = owner_id()
        log.info("worker.start", owner=owner, reclaimed=reclaimed, follow=follow)
        planning = Planning(finished=True)  # a worker plans nothing: what is pending is the job
        async with run_tools(settings, manifest, stop, "worker", metrics) as tools:
            source = make_source(
                settings, manifest, tools.store, owner, planning, stop, follow=follow
            )
            stats = await fetch_pending(
                settings, manifest, tools, source, owner=owner, command="worker"
            )
            report.absorb(stats, tools.client.requests, tools.client.retries)
        report.remaining = await count_pending(manifest)
        report.seconds = time.monotonic() - started
        report.interrupted_by = stop.signal
    return report
