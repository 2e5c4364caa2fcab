"""The pipeline: the one module that wires the stages together.

    planner ─► manifest (pending) ─► source ─► fetch ─► store ─► recorder ─► manifest (done)

``fetch_pending`` runs the four fetch-side stages as one task group joined by bounded memory
streams, so a slow disk or manifest slows the fetching down instead of piling up work.
``run_plan`` and ``run_mirror`` put seeding and planning in front; ``sync``, ``verify --repair``
and ``worker`` compose the same public functions.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from crawler.client import ApiClient
from crawler.commit import store_stage
from crawler.config import Settings
from crawler.fetch import Received, fetch_stage
from crawler.manifest import Manifest, Status, workers
from crawler.manifest.repository import Claimed, Outcome
from crawler.output import open_store
from crawler.planner import Planner, Target, recheck_done_files
from crawler.progress import RunProgress
from crawler.ratelimit import limiter_for
from crawler.recorder import FetchStats, Recorder
from crawler.reports import recorded_run
from crawler.selection import Selection
from crawler.session import RunReport, owner_id, run_session
from crawler.signals import Stop, watch_signals
from crawler.source import CursorSource, LeasedSource, Planning, Source
from crawler.store import Store

if TYPE_CHECKING:
    from crawler.metrics import RunMetrics  # prometheus_client loads only when asked for

log = structlog.get_logger("crawler.pipeline")

HEARTBEAT = 5.0  # seconds between the workers table's heartbeats
QUEUE_EVERY = 1.0  # seconds between counts of pending items, when metrics are served


def make_source(
    settings: Settings,
    manifest: Manifest,
    store: Store,
    owner: str,
    planning: Planning,
    stop: Stop,
    *,
    follow: bool = False,
    run: int | None = None,
) -> Source:
    """A cursor for a manifest this process alone uses, claims under a lease for a shared one.

    Claims are a few times the concurrency: pools that share a manifest take less at a time,
    so the last items spread over every worker. ``run`` scopes the source to the items that run
    planned (``mirror``, ``sync``); a ``worker`` passes none and drains everything.
    """
    batch = max(16, settings.concurrency * 4)
    if settings.exclusive:
        return CursorSource(
            manifest,
            planning,
            stop,
            batch=batch * 4,
            follow=follow,
            poll_seconds=settings.poll_seconds,
            scope=run,
        )
    return LeasedSource(
        manifest,
        store,
        owner,
        planning,
        stop,
        lease=timedelta(seconds=settings.lease_seconds),
        batch=batch,
        follow=follow,
        poll_seconds=settings.poll_seconds,
        scope=run,
    )


@dataclass
class Tools:
    """What the stages of one run share: the client, the store, the progress bar, the stop."""

    client: ApiClient
    store: Store
    progress: RunProgress
    stop: Stop
    metrics: RunMetrics | None = None


@asynccontextmanager
async def run_tools(
    settings: Settings,
    manifest: Manifest,
    stop: Stop,
    description: str,
    metrics: RunMetrics | None = None,
) -> AsyncIterator[Tools]:
    """The client, store and progress bar of a run, with its signals watched."""
    async with (
        open_store(settings) as store,
        ApiClient.open(settings, limiter_for(settings, manifest)) as client,
        anyio.create_task_group() as group,
    ):
        if metrics is not None:
            metrics.watch_client(client)
        group.start_soon(watch_signals, stop, settings.grace_seconds)
        progress = RunProgress(settings.progress, description)
        progress.watch(client)
        with progress:
            yield Tools(client, store, progress, stop, metrics)
        group.cancel_scope.cancel()


async def fetch_pending(
    settings: Settings,
    manifest: Manifest,
    tools: Tools,
    source: Source,
    *,
    owner: str,
    command: str,
) -> FetchStats:
    """Run source → fetch → store → recorder until the source ends (or a stop)."""

    def advance(outcome: Outcome) -> None:
        tools.progress.advance(1, outcome.size or 0, failed=outcome.status is Status.FAILED)

    recorder = Recorder(
        manifest,
        batch=settings.manifest_batch,
        flush_seconds=settings.manifest_flush_seconds,
        source=source,
        on_recorded=advance,
    )
    await workers.register(manifest, owner, command)
    buffer = settings.concurrency * 2
    work_send, work_receive = anyio.create_memory_object_stream[Claimed](buffer)
    fetched_send, fetched_receive = anyio.create_memory_object_stream[Received](buffer)
    outcome_send, outcome_receive = anyio.create_memory_object_stream[Outcome](
        settings.manifest_batch
    )
    try:
        async with anyio.create_task_group() as beating:
            beating.start_soon(_heartbeat, manifest, owner, tools.client, recorder.stats)
            if tools.metrics is not None:
                tools.metrics.watch_fetch(
                    recorder.stats, lambda: work_send.statistics().current_buffer_used
                )
                beating.start_soon(_measure_queue, manifest, tools.metrics)
            async with anyio.create_task_group() as stages:
                stages.start_soon(source.run, work_send)
                stages.start_soon(_fetch, tools, work_receive, fetched_send, settings.concurrency)
                stages.start_soon(store_stage, tools.store, fetched_receive, outcome_send)
                stages.start_soon(recorder.run, outcome_receive)
            beating.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await source.release()
            await workers.stopped(manifest, owner, _beat(tools.client, recorder.stats, 0.0))
    return recorder.stats


async def _fetch(
    tools: Tools,
    receive: MemoryObjectReceiveStream[Claimed],
    send: MemoryObjectSendStream[Received],
    tasks: int,
) -> None:
    await fetch_stage(tools.client, tools.store, receive, send, tasks=tasks, stop=tools.stop)


def _beat(client: ApiClient, stats: FetchStats, rate: float) -> workers.Beat:
    return workers.Beat(
        requests=client.requests,
        done=stats.done,
        failed=stats.failed,
        bytes=stats.bytes,
        rate=round(rate, 3),
    )


async def _measure_queue(manifest: Manifest, metrics: RunMetrics) -> None:
    """The queue depth for the metrics: pending items, counted every ``QUEUE_EVERY`` seconds."""
    while True:
        metrics.pending = await manifest.count_pending()
        await anyio.sleep(QUEUE_EVERY)


async def _heartbeat(manifest: Manifest, owner: str, client: ApiClient, stats: FetchStats) -> None:
    """Tell the workers table, every few seconds, that we are alive and how fast we go."""
    last_requests, last_time = client.requests, time.monotonic()
    while True:
        await anyio.sleep(HEARTBEAT)
        now = time.monotonic()
        rate = (client.requests - last_requests) / max(now - last_time, 1e-6)
        last_requests, last_time = client.requests, now
        await workers.beat(manifest, owner, _beat(client, stats, rate))


async def seed_targets(planner: Planner, selection: Selection, stop: Stop) -> list[Target]:
    """Every selected record, before anything is fetched; empty when a stop cut it short."""
    targets: list[Target] = []
    with stop.scope():
        targets = await planner.records(selection)
    return targets


async def prepare(
    planner: Planner,
    targets: list[Target],
    tools: Tools,
    manifest: Manifest,
    report: RunReport,
    *,
    on_returned: Source | None = None,
    sweep_before: float | None = None,
) -> None:
    """Plan every target beside the resume check (a stat of every done file, so the first
    request never waits for it) and, alone on the manifest, the sweep of parts killed runs
    left (this process's own parts carry its token: the sweep cannot take them). Items the
    resume check sent back in data sets the planner skipped are tagged with the run afterwards.
    A stop ends it early; what was planned stays planned."""

    sent_back: list[int] = []

    def returned(ids: list[int]) -> None:
        sent_back.extend(ids)
        if on_returned is not None:
            on_returned.returned(ids)

    async def resume() -> None:
        report.already_done = await recheck_done_files(manifest, tools.store, returned)
        if sweep_before is not None:
            await tools.store.sweep(sweep_before)

    async with anyio.create_task_group() as group:

        async def cancel_on_stop() -> None:
            await tools.stop.wait()
            group.cancel_scope.cancel()

        group.start_soon(cancel_on_stop)
        async with anyio.create_task_group() as preparing:
            preparing.start_soon(resume)
            await planner.plan_all(targets)
        if sent_back and planner.skipped and planner.run is not None:
            # Items of data sets the planner skipped (unchanged) carry an older run's tag.
            adopted = await manifest.adopt(sent_back, sorted(planner.skipped), planner.run)
            if adopted and on_returned is not None:
                on_returned.returned(adopted)
        group.cancel_scope.cancel()


async def count_pending(manifest: Manifest) -> int:
    """Items still pending: what a rerun would fetch."""
    tally = (await manifest.tallies()).get(Status.PENDING.value)
    return tally.items if tally is not None else 0


async def note_other_pending(manifest: Manifest, report: RunReport, run: int) -> None:
    """Say how many pending items other selections left: this run did not fetch them."""
    report.other_pending = await manifest.other_pending(run)
    if report.other_pending:
        log.info("run.other_pending", items=report.other_pending, fetch_with="allen-mirror worker")


async def items_to_fetch(manifest: Manifest, report: RunReport) -> int:
    """Pending and done items, less those already done: the progress bar's total."""
    tallies = await manifest.tallies()
    todo = sum(t.items for status, t in tallies.items() if status in ("pending", "done"))
    return todo - report.already_done


async def run_plan(settings: Settings, selection: Selection) -> RunReport:
    """Enumerate and record pending items without downloading anything."""
    report = RunReport(command="plan")
    started = time.monotonic()
    async with (
        run_session(settings, "plan") as manifest,
        recorded_run(manifest, settings, selection.describe(), report, None),
        open_store(settings) as store,
        ApiClient.open(settings, limiter_for(settings, manifest)) as client,
    ):
        try:
            planner = Planner(settings, manifest, client, report, store=store)
            await planner.plan_all(await planner.records(selection))
        finally:
            report.requests = client.requests
            report.retries = client.retries
            report.seconds = time.monotonic() - started
    return report


async def run_mirror(
    settings: Settings,
    selection: Selection,
    *,
    report_file: Path | None = None,
    metrics: RunMetrics | None = None,
) -> RunReport:
    """Plan the selection and fetch every pending item, resuming whatever came before.

    Planning and fetching overlap: items are fetched as soon as their data set is planned. The
    run is recorded in the manifest and a JSON report is written whatever the outcome.
    """
    report = RunReport(command="mirror")
    started, started_wall = time.monotonic(), time.time()
    stop = Stop()
    async with (
        run_session(settings, "mirror") as manifest,
        recorded_run(manifest, settings, selection.describe(), report, report_file) as run,
    ):
        try:
            await manifest.reclaim(exclusive=settings.exclusive)
            async with run_tools(settings, manifest, stop, "mirror", metrics) as tools:
                owner = owner_id()
                planning = Planning()
                source = make_source(
                    settings, manifest, tools.store, owner, planning, stop, run=run
                )
                planner = Planner(
                    settings,
                    manifest,
                    tools.client,
                    report,
                    planning.ring,
                    run=run,
                    store=tools.store,
                )
                targets = await seed_targets(planner, selection, stop)

                async def plan_then_finish() -> None:
                    try:
                        await prepare(
                            planner,
                            targets,
                            tools,
                            manifest,
                            report,
                            on_returned=source,
                            sweep_before=started_wall if settings.exclusive else None,
                        )
                        tools.progress.set_total(await items_to_fetch(manifest, report))
                    finally:
                        planning.finish()

                async with anyio.create_task_group() as group:
                    group.start_soon(plan_then_finish)
                    stats = await fetch_pending(
                        settings, manifest, tools, source, owner=owner, command="mirror"
                    )
                report.absorb(stats, tools.client.requests, tools.client.retries)
            if stop.requested:
                # Planning may have been cut short: items this selection did not get to re-plan
                # are not "other selections'", so everything pending is what a rerun resumes.
                report.remaining = await count_pending(manifest)
            else:
                await note_other_pending(manifest, report, run)
                report.remaining = await count_pending(manifest) - report.other_pending
        finally:
            report.seconds = time.monotonic() - started
            report.interrupted_by = stop.signal
    return report


__all__ = ["RunReport", "Selection", "fetch_pending", "run_mirror", "run_plan"]
