"""The pipeline: the one module that knows every stage: seed → plan → fetch → store → manifest."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog
from sqlalchemy import update

from crawler import plan, seed
from crawler.client import ApiClient
from crawler.config import Settings
from crawler.errors import LockedError, StorageError, UsageError
from crawler.fetch import Pool, Stop, images_per_second, watch_signals
from crawler.listing import check_manifest_exists
from crawler.lock import OutputLock
from crawler.manifest import Manifest, Status, open_manifest
from crawler.manifest.database import is_sqlite
from crawler.manifest.models import items
from crawler.manifest.repository import Outcome
from crawler.plan import Item, PlanOptions, is_failed
from crawler.progress import RunProgress
from crawler.ratelimit import limiter_for
from crawler.reports import recorded_run
from crawler.selection import Selection, resolve_filters
from crawler.store import sweep_parts, write_atomic

log = structlog.get_logger("crawler.pipeline")


@dataclass(frozen=True, slots=True)
class AtlasTarget:
    """An atlas to plan: its id and its AtlasImage records (enumerated before any download)."""

    atlas_id: int
    images: list[dict[str, Any]]


Target = dict[str, Any] | AtlasTarget  # a SectionDataSet record, or an atlas


@dataclass
class RunReport:
    """What a run did, for the summary line, the exit code and (later) the run report file."""

    command: str
    data_sets: int = 0
    atlases: int = 0
    images: int = 0
    planned: int = 0
    estimated_bytes: int = 0  # of every planned item, from the plan's estimate model
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
    removed: int = 0
    pruned: int = 0
    changed: int = 0
    unchanged: int = 0
    verified: int = 0
    missing: int = 0
    corrupt: int = 0
    repaired: int = 0
    # image ids the API lists now, per manifest data set id (sync decides removals from it)
    listed: dict[int, set[int]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 items failed or corrupt, 128+signal when interrupted."""
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        unrepaired = self.missing + self.corrupt - self.repaired
        return 1 if self.failed or unrepaired > 0 else 0

    def absorb(self, pool: Pool, client: ApiClient) -> None:
        """Take over what a fetch pool and its client did."""
        self.done = pool.stats.done
        self.failed = pool.stats.failed
        self.bytes = pool.stats.bytes
        self.failures = pool.stats.failures
        self.requests = client.requests
        self.retries = client.retries

    def counts(self) -> dict[str, int]:
        """The counts a report and the runs table keep."""
        return {
            "data_sets": self.data_sets,
            "images": self.images,
            "items_planned": self.planned,
            "new": self.new_items,
            "already_done": self.already_done,
            "downloaded": self.done,
            "unchanged": self.unchanged,
            "changed": self.changed,
            "removed": self.removed,
            "pruned": self.pruned,
            "failed": self.failed,
            "verified": self.verified,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "repaired": self.repaired,
            "skipped_failed": self.skipped_failed,
            "requests": self.requests,
            "retries": self.retries,
        }

    def summary(self) -> dict[str, object]:
        return {
            "command": self.command,
            "data_sets": self.data_sets,
            "atlases": self.atlases,
            "images": self.images,
            "items_planned": self.planned,
            "estimated_bytes": self.estimated_bytes,
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
    """The plan-shaping settings, parsed (the config has already validated them)."""
    extras = settings.extras.strip()
    return PlanOptions(
        downsample=settings.downsample,
        quality=settings.quality,
        kinds=plan.parse_choices(settings.images, plan.IMAGE_KINDS, "image kind"),
        range=plan.parse_range(settings.range),
        tile=settings.tile,
        annotation=settings.annotation,
        extras=plan.parse_choices(extras, plan.EXTRAS, "extra") if extras else (),
        grid_types=plan.parse_choices(settings.grid_types, plan.GRID_TYPES, "grid type"),
        grid_resolution=settings.grid_resolution,
    )


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


PLAN_CHUNK = 10_000  # items per manifest transaction: a huge tile plan never holds it long


class _Planner:
    """Seeds every selected data set and atlas and records its items, poking the pool as
    items land. Items are generated and inserted in chunks, never listed whole."""

    def __init__(
        self, settings: Settings, manifest: Manifest, client: ApiClient, report: RunReport
    ) -> None:
        self.settings = settings
        self.manifest = manifest
        self.client = client
        self.report = report
        self.options = plan_options(settings)
        self.sections: tuple[int, int] | None = None

    async def records(self, selection: Selection) -> list[Target]:
        """Every selected data set record and atlas, enumerated before anything is fetched,
        so a bad id, product, criteria or atlas stops the run before it starts."""
        base, page_size = self.settings.api_base, self.settings.page_size
        self.sections = selection.sections
        found: dict[int, dict[str, Any]] = {}

        def union(rows: Sequence[dict[str, Any]]) -> None:
            for row in rows:
                found.setdefault(int(row["id"]), row)

        if selection.data_sets:
            union(
                await seed.fetch_data_sets(
                    self.client, base, selection.data_sets, page_size=page_size
                )
            )
        filtered = not selection.filters.empty  # the filters narrow the products
        for product_id in () if filtered else dict.fromkeys(selection.products):
            union(
                await seed.fetch_product_data_sets(
                    self.client, base, product_id, page_size=page_size
                )
            )
        if filtered:

            async def rows(stages: str, what: str) -> list[dict[str, Any]]:
                return await seed.enumerate_rows(
                    self.client, base, stages, page_size=page_size, what=what
                )

            criteria = await resolve_filters(selection, rows, base)
            log.info("selection.rma", criteria=criteria, query=seed.criteria_stages(criteria))
            union(
                await seed.fetch_criteria_data_sets(
                    self.client, base, criteria, page_size=page_size, option="selection"
                )
            )
        for criteria in dict.fromkeys(selection.criteria):
            union(
                await seed.fetch_criteria_data_sets(
                    self.client, base, criteria, page_size=page_size
                )
            )
        targets: list[Target] = list(found.values())
        for atlas_id in dict.fromkeys(selection.atlases):
            images = await seed.fetch_atlas_images(self.client, base, atlas_id, page_size=page_size)
            targets.append(AtlasTarget(atlas_id, images))
        return targets

    async def plan_all(self, targets: Sequence[Target], pool: Pool | None = None) -> None:
        for target in targets:
            if isinstance(target, AtlasTarget):
                await self._plan_atlas(target, pool)
            else:
                await self._plan_data_set(target, pool)

    def _usable(self, images: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Images within --sections, without failed ones unless --include-failed."""
        chosen = [i for i in images if plan.in_sections(i, self.sections)]
        usable = [i for i in chosen if self.settings.include_failed or not is_failed(i)]
        self.report.skipped_failed += len(chosen) - len(usable)
        return usable

    async def _plan_data_set(self, record: dict[str, Any], pool: Pool | None) -> None:
        data_set_id = int(str(record["id"]))
        if is_failed(record) and not self.settings.include_failed:
            log.warning("plan.skip_failed_data_set", data_set_id=data_set_id)
            self.report.skipped_failed += 1
            return
        all_images = await seed.fetch_section_images(
            self.client, self.settings.api_base, data_set_id, page_size=self.settings.page_size
        )
        self.report.listed[data_set_id] = {int(i["id"]) for i in all_images}
        images = self._usable(all_images)
        await seed.save_seed(
            self.settings.out,
            seed.DataSetSeed(record=dict(record), images=all_images),
            fsync=self.settings.fsync,
        )
        context = plan.data_set_context(record, self.options)
        renderings = plan.section_renderings(self.options, context)
        absent = [k for k in self.options.kinds if not plan.applies(k, context)]
        if absent:
            log.info("plan.kinds_not_applicable", data_set_id=data_set_id, kinds=absent)
        root = str(data_set_id)
        await self._write_tile_indexes(root, images, renderings)

        def generate() -> Iterator[Item]:
            for image in images:
                yield from plan.plan_image(root, image, renderings, self.options)
            yield from plan.plan_extras(record, self.options, context)

        planned, added = await self._record(generate(), pool)
        self.report.data_sets += 1
        self.report.images += len(images)
        log.info(
            "plan.data_set", data_set_id=data_set_id, images=len(images), items=planned, new=added
        )

    async def _plan_atlas(self, target: AtlasTarget, pool: Pool | None) -> None:
        for image in target.images:
            listing = self.report.listed.setdefault(int(image["data_set_id"]), set())
            listing.add(int(image["id"]))
        images = self._usable(target.images)
        await seed.save_atlas_seed(
            self.settings.out, target.atlas_id, target.images, fsync=self.settings.fsync
        )
        renderings = plan.atlas_renderings(target.atlas_id, self.options)
        root = plan.atlas_root(target.atlas_id)
        await self._write_tile_indexes(root, images, renderings)
        planned, added = await self._record(
            (
                item
                for image in images
                for item in plan.plan_image(root, image, renderings, self.options)
            ),
            pool,
        )
        self.report.atlases += 1
        self.report.images += len(images)
        log.info(
            "plan.atlas", atlas_id=target.atlas_id, images=len(images), items=planned, new=added
        )

    async def _write_tile_indexes(
        self, root: str, images: Sequence[dict[str, Any]], renderings: list[plan.Rendering]
    ) -> None:
        """Each tiled image's index.json, written atomically while planning."""
        if not self.options.tile:
            return
        out, fsync, options = self.settings.out, self.settings.fsync, self.options

        def write() -> None:
            for image in images:
                for path, document in plan.tile_indexes(root, image, renderings, options):
                    data = json.dumps(document, separators=(",", ":")).encode()
                    write_atomic(out / path, data, fsync=fsync)

        await anyio.to_thread.run_sync(write)

    async def _record(self, planned: Iterable[Item], pool: Pool | None) -> tuple[int, int]:
        """Insert items chunk by chunk; returns (items planned, items new to the manifest)."""
        count = added = 0
        iterator = iter(planned)
        while chunk := list(itertools.islice(iterator, PLAN_CHUNK)):
            added += await self.manifest.add_items(chunk, self.settings.api_base)
            count += len(chunk)
            self.report.estimated_bytes += sum(item.estimate for item in chunk)
            if pool is not None:
                pool.poke()
        self.report.planned += count
        self.report.new_items += added
        return count, added


VERIFY_FLAG = "verify: "  # error prefix verify leaves on done items whose file is bad


async def requeue_flagged(manifest: Manifest) -> int:
    """Done items that ``verify`` flagged go back to the queue."""
    async with manifest.begin() as connection:
        result = await connection.execute(
            update(items)
            .where(items.c.status == Status.DONE.value, items.c.error.startswith(VERIFY_FLAG))
            .values(status=Status.PENDING.value)
        )
    return int(result.rowcount or 0)


async def recheck_done_files(
    manifest: Manifest, out: Path, *, on_requeue: Callable[[], None] | None = None
) -> tuple[int, int]:
    """Resume rule: a done item whose file is missing or of another size goes back to pending,
    and so does one that ``verify`` found corrupt. ``on_requeue`` wakes a waiting fetcher.

    Returns (done items whose file is intact, items sent back).
    """
    flagged = await requeue_flagged(manifest)
    if flagged and on_requeue is not None:
        on_requeue()
    intact = 0
    reopened = flagged
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
            if on_requeue is not None:
                on_requeue()
        intact += len(chunk) - len(bad)
        reopened += len(bad)
    return intact, reopened


@asynccontextmanager
async def manifest_session(
    settings: Settings,
    command: str,
    *,
    must_exist: bool = False,
    locked_hint: str | None = None,
) -> AsyncIterator[Manifest]:
    """A run's manifest: OUT checked, the output lock held for SQLite, closed whatever happens.

    ``must_exist`` is for commands that read or finish a mirror and must not create one;
    ``locked_hint`` is added to the refusal when another run holds the lock.
    """
    check_output_dir(settings.out)
    lock = OutputLock(settings.out, command) if is_sqlite(settings.manifest_url) else None
    if lock is not None:
        if must_exist:
            check_manifest_exists(settings.manifest_url)
        try:
            lock.acquire()
        except LockedError as exc:
            if locked_hint is None:
                raise
            raise LockedError(f"{exc}; {locked_hint}") from None
    try:
        manifest = await open_manifest(settings.manifest_url)
        try:
            yield manifest
        finally:
            with anyio.CancelScope(shield=True):
                await manifest.close()
    finally:
        if lock is not None:
            lock.release()


async def run_plan(settings: Settings, selection: Selection) -> RunReport:
    """Enumerate and record pending items without downloading anything."""
    report = RunReport(command="plan")
    started = time.monotonic()
    async with (
        manifest_session(settings, "plan") as manifest,
        ApiClient.open(settings, limiter_for(settings, manifest)) as client,
    ):
        planner = _Planner(settings, manifest, client, report)
        await planner.plan_all(await planner.records(selection))
        report.requests = client.requests
        report.retries = client.retries
    report.seconds = time.monotonic() - started
    return report


BeforeFetch = Callable[[Manifest, RunReport], Awaitable[None]]


async def run_mirror(
    settings: Settings,
    selection: Selection,
    *,
    command: str = "mirror",
    before_fetch: BeforeFetch | None = None,
    after_fetch: BeforeFetch | None = None,
    report_file: Path | None = None,
) -> RunReport:
    """Plan the selection and fetch every pending item, resuming whatever came before.

    With ``before_fetch`` (sync), planning finishes first, the hook runs, then fetching starts;
    otherwise planning and fetching overlap. The run is recorded in the manifest and a JSON
    report is written whatever the outcome.
    """
    report = RunReport(command=command)
    started_wall = time.time()
    started = time.monotonic()
    exclusive = is_sqlite(settings.manifest_url)
    stop = Stop()
    async with (
        manifest_session(settings, command) as manifest,
        recorded_run(manifest, settings, selection.describe(), report, report_file),
    ):
        try:
            await manifest.reopen(exclusive=exclusive)

            async def resume_checks(pool: Pool) -> None:
                """Runs beside planning and fetching, so the first request never waits for a
                stat of every done file (a minute at millions of files). The sweep cannot take
                a part this run writes: those carry this process's token (crawler/store.py)."""
                report.already_done, report.reverified = await recheck_done_files(
                    manifest, settings.out, on_requeue=pool.poke
                )
                if exclusive:
                    report.parts_removed = await anyio.to_thread.run_sync(
                        sweep_parts, settings.out, started_wall
                    )

            await _mirror(settings, selection, manifest, report, stop, before_fetch, resume_checks)
            if after_fetch is not None:
                with anyio.CancelScope(shield=True):
                    await after_fetch(manifest, report)
        finally:
            report.seconds = time.monotonic() - started
            report.interrupted_by = stop.signal
    return report


async def _mirror(
    settings: Settings,
    selection: Selection,
    manifest: Manifest,
    report: RunReport,
    stop: Stop,
    before_fetch: BeforeFetch | None,
    resume_checks: Callable[[Pool], Coroutine[Any, Any, None]],
) -> None:
    planning_done = anyio.Event()
    limiter = limiter_for(settings, manifest)  # shared by every worker on a Postgres manifest
    with RunProgress(settings.progress) as progress:
        async with ApiClient.open(settings, limiter) as client, anyio.create_task_group() as outer:
            fetch_scope = anyio.CancelScope()
            outer.start_soon(watch_signals, stop, fetch_scope, settings.grace_seconds)
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
                exclusive=is_sqlite(settings.manifest_url),  # under the output lock
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
                            async with anyio.create_task_group() as preparing:
                                preparing.start_soon(resume_checks, pool)
                                await planner.plan_all(records, pool)
                            if before_fetch is not None:
                                await before_fetch(manifest, report)
                            group.cancel_scope.cancel()
                        tallies = await manifest.tallies()
                        todo = sum(t.items for s, t in tallies.items() if s in ("pending", "done"))
                        progress.set_total(todo - report.already_done)
                    finally:
                        planning_done.set()
                        pool.poke()

                if before_fetch is None:
                    async with anyio.create_task_group() as work:
                        work.start_soon(plan_until_stopped)
                        await pool.run()
                else:
                    await plan_until_stopped()
                    if not stop.requested:
                        await pool.run()
            outer.cancel_scope.cancel()
        report.absorb(pool, client)


__all__ = ["RunReport", "Selection", "StorageError", "run_mirror", "run_plan"]
