"""Planning a selection into the manifest, and the resume check of what is already done.

The planner seeds every selected data set and atlas (crawler/seed.py), turns records into items
(crawler/plan.py, pure) and records them chunk by chunk, ringing the work source as items land,
so fetching starts before planning ends. Nothing is held whole: a million tiles plan in chunks.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from crawler import plan, seed
from crawler.ccf import plan_ccf
from crawler.client import ApiClient
from crawler.config import Settings
from crawler.errors import DiskFullError, StorageError
from crawler.manifest import Manifest
from crawler.plan import Item, is_failed
from crawler.selection import Selection, resolve_filters
from crawler.session import RunReport
from crawler.store import Store

log = structlog.get_logger("crawler.planner")

PLAN_CHUNK = 10_000  # items per manifest transaction: a huge tile plan never holds it long


@dataclass(frozen=True, slots=True)
class AtlasTarget:
    """An atlas to plan: its id and its AtlasImage records (enumerated before any download)."""

    atlas_id: int
    images: list[dict[str, Any]]


Target = dict[str, Any] | AtlasTarget  # a SectionDataSet record, or an atlas


class ItemSink(Protocol):
    """Takes planned items a chunk at a time; says how many were new."""

    async def add(self, chunk: list[Item], api_base: str) -> int: ...


class _ManifestSink:
    """Records planned items, tagged with the run that planned them."""

    def __init__(self, manifest: Manifest | None, run: int | None) -> None:
        self.manifest = manifest
        self.run = run

    async def add(self, chunk: list[Item], api_base: str) -> int:
        assert self.manifest is not None, "a planner that records needs a manifest"
        return await self.manifest.add_items(chunk, api_base, run=self.run)


class Planner:
    """Seeds the selection and records its items; ``listed`` keeps, per data set, the image ids
    the API lists now (sync decides removals from it)."""

    def __init__(
        self,
        settings: Settings,
        manifest: Manifest | None,
        client: ApiClient,
        report: RunReport,
        on_items: Callable[[], None] = lambda: None,
        *,
        sink: ItemSink | None = None,
        run: int | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.run = run  # the runs row that tags what is planned (mirror and sync fetch those)
        self.manifest = manifest
        # Where planned items go: the manifest, or (a dry run) something that only counts them,
        # in which case nothing at all is written.
        self.sink: ItemSink = sink or _ManifestSink(manifest, run)
        self.writes = sink is None
        self.store = store  # where dataset.json and the tile indexes go (when it writes)
        self.client = client
        self.report = report
        self.on_items = on_items  # new items were recorded
        self.options = settings.plan_options()
        self.sections: tuple[int, int] | None = None
        self.listed: dict[int, set[int]] = {}

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
                    self.client,
                    base,
                    selection.data_sets,
                    page_size=page_size,
                    on_missing=self._skip_unknown if self.settings.ignore_missing else None,
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

    def _skip_unknown(self, ids: list[int]) -> None:
        """``--ignore-missing``: say which ids the API does not know, once, and go on."""
        self.report.unknown_data_sets = ids
        log.warning(
            "selection.unknown_data_sets", ids=ids, count=len(ids), api_base=self.settings.api_base
        )

    async def plan_all(self, targets: Sequence[Target]) -> None:
        if planned := list(plan_ccf(self.options)):  # atlas-wide files: once per run
            count, added = await self._record(planned)
            log.info("plan.ccf", items=count, new=added)
        for target in targets:
            if isinstance(target, AtlasTarget):
                await self._plan_atlas(target)
            else:
                await self._plan_data_set(target)

    def _usable(self, images: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Images within --sections, without failed ones unless --include-failed."""
        chosen = [i for i in images if plan.in_sections(i, self.sections)]
        if images and not chosen and self.sections is not None:
            numbers = sorted(int(i.get("section_number") or 0) for i in images)
            log.warning(
                "plan.sections_matched_nothing",
                data_set_id=images[0].get("data_set_id"),
                sections=f"{self.sections[0]}-{self.sections[1]}",
                section_numbers=f"{numbers[0]}-{numbers[-1]}",
            )
        usable = [i for i in chosen if self.settings.include_failed or not is_failed(i)]
        self.report.skipped_failed += len(chosen) - len(usable)
        return usable

    async def _plan_data_set(self, record: dict[str, Any]) -> None:
        data_set_id = int(str(record["id"]))
        if is_failed(record) and not self.settings.include_failed:
            log.warning("plan.skip_failed_data_set", data_set_id=data_set_id)
            self.report.skipped_failed += 1
            return
        all_images = await seed.fetch_section_images(
            self.client, self.settings.api_base, data_set_id, page_size=self.settings.page_size
        )
        self.listed[data_set_id] = {int(i["id"]) for i in all_images}
        images = self._usable(all_images)
        root = str(data_set_id)
        with metadata_written(root):
            if self.writes:
                await seed.save_seed(
                    self._store(), seed.DataSetSeed(record=dict(record), images=all_images)
                )
        context = plan.data_set_context(record, self.options)
        renderings = plan.section_renderings(self.options, context)
        absent = [k for k in self.options.kinds if not plan.applies(k, context)]
        if absent:
            log.info("plan.kinds_not_applicable", data_set_id=data_set_id, kinds=absent)

        def generate() -> Iterator[Item]:
            for image in images:
                yield from plan.plan_image(root, image, renderings, self.options)
            yield from plan.plan_extras(record, self.options, context)

        planned, added = await self._record(generate())
        # After the items: a full-resolution image's index lists every tile (tens of MB), and
        # the downloads need not wait for it.
        with metadata_written(root):
            await self._write_tile_indexes(root, images, renderings)
        self.report.data_sets += 1
        self.report.images += len(images)
        log.info(
            "plan.data_set", data_set_id=data_set_id, images=len(images), items=planned, new=added
        )

    async def _plan_atlas(self, target: AtlasTarget) -> None:
        for image in target.images:
            self.listed.setdefault(int(image["data_set_id"]), set()).add(int(image["id"]))
        images = self._usable(target.images)
        root = plan.atlas_root(target.atlas_id)
        with metadata_written(root):
            if self.writes:
                await seed.save_atlas_seed(self._store(), target.atlas_id, target.images)
        renderings = plan.atlas_renderings(target.atlas_id, self.options)
        planned, added = await self._record(
            item
            for image in images
            for item in plan.plan_image(root, image, renderings, self.options)
        )
        with metadata_written(root):
            await self._write_tile_indexes(root, images, renderings)
        self.report.atlases += 1
        self.report.images += len(images)
        log.info(
            "plan.atlas", atlas_id=target.atlas_id, images=len(images), items=planned, new=added
        )

    async def _write_tile_indexes(
        self, root: str, images: Sequence[dict[str, Any]], renderings: list[plan.Rendering]
    ) -> None:
        """Each tiled image's index.json, written atomically while planning."""
        if not self.options.tile or not self.writes:
            return
        store = self._store()
        for image in images:
            for path, document in plan.tile_indexes(root, image, renderings, self.options):
                await store.put(path, json.dumps(document, separators=(",", ":")).encode())

    def _store(self) -> Store:
        assert self.store is not None, "a planner that writes needs a store"
        return self.store

    async def _record(self, planned: Iterable[Item]) -> tuple[int, int]:
        """Insert items chunk by chunk; returns (items planned, items new to the manifest)."""
        count = added = 0
        iterator = iter(planned)
        while chunk := list(itertools.islice(iterator, PLAN_CHUNK)):
            added += await self.sink.add(chunk, self.settings.api_base)
            count += len(chunk)
            self.report.estimated_bytes += sum(item.estimate for item in chunk)
            self.on_items()
        self.report.planned += count
        self.report.new_items += added
        return count, added


@contextmanager
def metadata_written(root: str) -> Iterator[None]:
    """A data set's metadata (dataset.json, tile indexes) that cannot be written is a warning:
    its items are still planned and fail one by one with the same reason, while the rest of the
    run goes on. A full disk still stops the run."""
    try:
        yield
    except DiskFullError:
        raise
    except StorageError as error:
        log.warning("plan.metadata_not_written", root=root, error=str(error))


async def recheck_done_files(
    manifest: Manifest, store: Store, on_returned: Callable[[list[int]], None]
) -> int:
    """The resume rule: a done item whose file is missing or has another size than recorded
    goes back to pending, and so does one ``verify`` flagged. ``on_returned`` hears of each
    item sent back. Returns how many done items have an intact file."""
    if flagged := await manifest.requeue_flagged():
        on_returned(flagged)
    intact = 0
    async for chunk in manifest.done_files():
        sizes = await store.sizes([path for _, path, _ in chunk])
        bad = [item_id for (item_id, _, size), found in zip(chunk, sizes, strict=True)
               if found != size]  # fmt: skip
        if bad:
            await manifest.mark_pending(bad, "file missing or wrong size on disk")
            on_returned(bad)
        intact += len(chunk) - len(bad)
    return intact
