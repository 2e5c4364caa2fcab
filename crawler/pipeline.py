"""The pipeline: the one module that knows every stage: seed → plan → fetch → store → manifest."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

from crawler import seed
from crawler.client import ApiClient
from crawler.config import Settings
from crawler.errors import StorageError, UsageError
from crawler.fetch import Pool, Stop, images_per_second
from crawler.lock import OutputLock
from crawler.manifest import Manifest, open_manifest
from crawler.manifest.database import is_sqlite
from crawler.manifest.repository import Outcome
from crawler.plan import Item, PlanOptions, is_failed, plan_section_image
from crawler.progress import RunProgress
from crawler.store import sweep_parts

log = structlog.get_logger("crawler.pipeline")


@dataclass(frozen=True, slots=True)
class Selection:
    """What the user pointed at."""

    data_sets: tuple[int, ...] = ()

    def describe(self) -> dict[str, object]:
        return {"data_sets": list(self.data_sets)}


@dataclass
class RunReport:
    """What a run did, for the summary line, the exit code and (later) the run report file."""

    command: str
    data_sets: int = 0
    images: int = 0
    planned: int = 0
    new_items: int = 0
    already_done: int = 0
    done: int = 0
    failed: int = 0
    bytes: int = 0
    requests: int = 0
    retries: int = 0
    reverified: int = 0
    skipped_failed: int = 0
    parts_removed: int = 0
    seconds: float = 0.0
    failures: list[Outcome] = field(default_factory=list)
    interrupted_by: int | None = None

    def summary(self) -> dict[str, object]:
        return {
            "command": self.command,
            "data_sets": self.data_sets,
            "images": self.images,
            "items_planned": self.planned,
            "new_items": self.new_items,
            "skipped_failed": self.skipped_failed,
            "already_done": self.already_done,
            "done": self.done,
            "failed": self.failed,
            "bytes": self.bytes,
            "requests": self.requests,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "images_per_s": images_per_second(self.done, self.seconds),
            "interrupted": signal.Signals(self.interrupted_by).name
            if self.interrupted_by
            else None,
        }


def owner_id() -> str:
    """A claim owner name that tells people where a worker runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def plan_options(settings: Settings) -> PlanOptions:
    return PlanOptions(downsample=settings.downsample, quality=settings.quality)


def check_output_dir(out: Path) -> None:
    """Fail early, in one line, when OUT cannot hold a mirror."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {out}: {exc.strerror}") from exc
    if not out.is_dir():
        raise UsageError(f"output path {out} is not a directory")
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {out} is not writable")


class _Planner:
    """Seeds every selected data set and records its items, poking the pool as items land."""

    def __init__(
        self, settings: Settings, manifest: Manifest, client: ApiClient, report: RunReport
    ) -> None:
        self.settings = settings
        self.manifest = manifest
        self.client = client
        self.report = report
        self.options = plan_options(settings)

    async def records(self, selection: Selection) -> list[dict[str, object]]:
        return await seed.fetch_data_sets(
            self.client,
            self.settings.api_base,
            selection.data_sets,
            page_size=self.settings.page_size,
        )

    async def plan_all(
        self, records: Sequence[dict[str, object]], pool: Pool | None = None
    ) -> None:
        include_failed = self.settings.include_failed
        for record in records:
            data_set_id = int(str(record["id"]))
            if is_failed(record) and not include_failed:
                log.warning("plan.skip_failed_data_set", data_set_id=data_set_id)
                self.report.skipped_failed += 1
                continue
            all_images = await seed.fetch_section_images(
                self.client, self.settings.api_base, data_set_id, page_size=self.settings.page_size
            )
            images = [i for i in all_images if include_failed or not is_failed(i)]
            self.report.skipped_failed += len(all_images) - len(images)
            await seed.save_seed(
                self.settings.out,
                seed.DataSetSeed(record=dict(record), images=all_images),
                fsync=self.settings.fsync,
            )
            items: list[Item] = [
                item for image in images for item in plan_section_image(image, self.options)
            ]
            added = await self.manifest.add_items(items, self.settings.api_base)
            self.report.data_sets += 1
            self.report.images += len(images)
            self.report.planned += len(items)
            self.report.new_items += added
            log.info(
                "plan.data_set",
                data_set_id=data_set_id,
                images=len(images),
                items=len(items),
                new=added,
            )
            if pool is not None:
                pool.poke()


async def recheck_done_files(manifest: Manifest, out: Path) -> tuple[int, int]:
    """Resume rule: a done item whose file is missing or of another size goes back to pending.

    Returns (done items whose file is intact, items sent back).
    """
    intact = 0
    reopened = 0
    async for chunk in manifest.done_files():

        def check(rows: list[tuple[int, str, int]] = chunk) -> list[int]:
            bad: list[int] = []
            for item_id, path, size in rows:
                try:
                    if (out / path).stat().st_size != size:
                        bad.append(item_id)
                except OSError:
                    bad.append(item_id)
            return bad

        bad = await anyio.to_thread.run_sync(check)
        if bad:
            await manifest.mark_pending(bad, "file missing or wrong size on disk")
        intact += len(chunk) - len(bad)
        reopened += len(bad)
    return intact, reopened


async def _watch_signals(stop: Stop, fetch_scope: anyio.CancelScope, grace: float) -> None:
    """First SIGINT/SIGTERM: stop claiming and give in-flight items ``grace`` seconds.

    A second signal ends the process at once; the manifest stays consistent because every
    write is a transaction and unrecorded items are simply fetched again next time.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stop.signal is None:
                stop.signal = int(signum)
                stop.event.set()
                log.warning("run.stopping", signal=signal.Signals(signum).name, grace_s=grace)

                async def cut_off() -> None:
                    await anyio.sleep(grace)
                    fetch_scope.cancel()

                async with anyio.create_task_group() as group:
                    group.start_soon(cut_off)
                    async for again in signals:
                        log.warning("run.abort", signal=signal.Signals(again).name)
                        os._exit(128 + int(again))


async def run_plan(settings: Settings, selection: Selection) -> RunReport:
    """Enumerate and record pending items without downloading anything."""
    report = RunReport(command="plan")
    started = time.monotonic()
    check_output_dir(settings.out)
    lock = OutputLock(settings.out, "plan") if is_sqlite(settings.manifest_url) else None
    if lock:
        lock.acquire()
    try:
        manifest = await open_manifest(settings.manifest_url)
        try:
            async with ApiClient.open(settings) as client:
                planner = _Planner(settings, manifest, client, report)
                await planner.plan_all(await planner.records(selection))
                report.requests = client.requests
                report.retries = client.retries
        finally:
            await manifest.close()
    finally:
        if lock:
            lock.release()
    report.seconds = time.monotonic() - started
    return report


async def run_mirror(settings: Settings, selection: Selection) -> RunReport:
    """Plan the selection and fetch every pending item, resuming whatever came before."""
    report = RunReport(command="mirror")
    started_wall = time.time()
    started = time.monotonic()
    check_output_dir(settings.out)
    exclusive = is_sqlite(settings.manifest_url)
    lock = OutputLock(settings.out, "mirror") if exclusive else None
    if lock:
        lock.acquire()
    stop = Stop()
    try:
        manifest = await open_manifest(settings.manifest_url)
        try:
            await manifest.reopen(exclusive=exclusive)
            report.already_done, report.reverified = await recheck_done_files(
                manifest, settings.out
            )
            if exclusive:
                report.parts_removed = await anyio.to_thread.run_sync(
                    sweep_parts, settings.out, started_wall
                )
            await _mirror(settings, selection, manifest, report, stop)
        finally:
            with anyio.CancelScope(shield=True):
                await manifest.close()
    finally:
        if lock:
            lock.release()
    report.seconds = time.monotonic() - started
    report.interrupted_by = stop.signal
    return report


async def _mirror(
    settings: Settings, selection: Selection, manifest: Manifest, report: RunReport, stop: Stop
) -> None:
    planning_done = anyio.Event()
    with RunProgress(settings.progress) as progress:
        async with ApiClient.open(settings) as client, anyio.create_task_group() as outer:
            fetch_scope = anyio.CancelScope()
            outer.start_soon(_watch_signals, stop, fetch_scope, settings.grace_seconds)
            planner = _Planner(settings, manifest, client, report)

            def on_outcome(outcome: Outcome) -> None:
                progress.advance(1, outcome.size or 0)

            pool = Pool(
                settings,
                manifest,
                client,
                owner_id(),
                stop=stop,
                planning_done=planning_done,
                on_outcome=on_outcome,
            )
            with fetch_scope:
                records = await planner.records(selection)

                async def plan_until_stopped() -> None:
                    try:
                        async with anyio.create_task_group() as group:

                            async def cancel_on_stop() -> None:
                                await stop.event.wait()
                                group.cancel_scope.cancel()

                            group.start_soon(cancel_on_stop)
                            await planner.plan_all(records, pool)
                            group.cancel_scope.cancel()
                        tallies = await manifest.tallies()
                        todo = sum(t.items for s, t in tallies.items() if s in ("pending", "done"))
                        progress.set_total(todo - report.already_done)
                    finally:
                        planning_done.set()
                        pool.poke()

                async with anyio.create_task_group() as work:
                    work.start_soon(plan_until_stopped)
                    await pool.run()
            outer.cancel_scope.cancel()
        report.done = pool.stats.done
        report.failed = pool.stats.failed
        report.bytes = pool.stats.bytes
        report.failures = pool.stats.failures
        report.requests = client.requests
        report.retries = client.retries


__all__ = ["RunReport", "Selection", "StorageError", "run_mirror", "run_plan"]
