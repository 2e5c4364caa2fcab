"""Planning a selection into the manifest, and the resume check of what is already done.

The planner seeds every selected data set and atlas (crawler/seed.py; the images of many data
sets per query, crawler/seeding.py), turns records into items (crawler/plan.py, pure) and
records them chunk by chunk, ringing the work source as items land, so fetching starts before
planning ends. Nothing is held whole: a million tiles plan in chunks, a product a few pages of
images at a time. A data set whose ``dataset.json`` stamp says nothing changed and whose items
are all done is skipped (crawler/stamps.py), so a no-op sync costs its RMA pages and little else.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from crawler import plan, seed, seeding, seenpages, stamps
from crawler.ccf import plan_ccf
from crawler.client import ApiClient
from crawler.config import Settings
from crawler.errors import DiskFullError, StorageError
from crawler.manifest import Manifest, Status
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


class _Listing:
    """One data set as this run plans it: record, images (checked, all of them and those
    planned), its fingerprint and how its items are rendered."""

    def __init__(
        self,
        record: dict[str, Any],
        rows: list[dict[str, Any]],
        fingerprint: str,
        usable: Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], int]],
        options: plan.PlanOptions,
    ) -> None:
        self.id = int(str(record["id"]))
        self.root = str(self.id)
        self.record, self.rows, self.fingerprint = record, rows, fingerprint
        self.all_images = seeding.usable_images(rows)
        self.images, self.failed = usable(self.all_images)
        self.context = plan.data_set_context(record, options)
        self.renderings = plan.section_renderings(options, self.context)
        self.absent = [k for k in options.kinds if not plan.applies(k, self.context)]

    def document(self) -> bytes:
        """Its ``dataset.json`` without the stamp (only data sets planned again are written)."""
        return stamps.listing_document(self.record, self.all_images)

    def items(self, options: plan.PlanOptions) -> Iterator[Item]:
        for image in self.images:
            yield from plan.plan_image(self.root, image, self.renderings, options)
        yield from plan.plan_extras(self.record, options, self.context)


class Planner:
    """Seeds the selection and records its items; ``listed`` keeps, per data set, the image ids
    the API lists now (sync decides removals from it), ``skipped`` the data sets left as they
    were (their items are not tagged with this run: ``pipeline.prepare`` tags those the resume
    check sends back) and ``settled`` those of them whose items are exactly what their listing
    planned, none removed: sync has nothing to reconcile there, and they are not in ``listed``."""

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
        skip_unchanged: bool = True,
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
        # A data set whose stamp matches and whose items are all done is not planned again
        # (off for ``sync --recheck``, which must tag every item of the selection).
        self.skip_unchanged = skip_unchanged and self.writes
        self.skipped: set[int] = set()
        self.settled: set[int] = set()
        self.undecoded = 0  # data sets skipped without decoding their pages (seenpages)

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
                await seeding.fetch_data_sets(
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
        await self._plan_data_sets([t for t in targets if not isinstance(t, AtlasTarget)])
        for target in targets:
            if isinstance(target, AtlasTarget):
                await self._plan_atlas(target)

    def _usable(self, images: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Images within --sections, without failed ones unless --include-failed."""
        usable, failed = self._choose(images)
        self.report.skipped_failed += failed
        return usable

    def _choose(self, images: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """(images within --sections and not failed unless --include-failed, failed ones)."""
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
        return usable, len(chosen) - len(usable)

    async def _plan_data_sets(self, records: Sequence[dict[str, Any]]) -> None:
        """Seed the data sets' images a chunk of data sets per query (crawler/seeding.py) and
        plan each chunk as it arrives; data sets whose stamp says nothing changed are skipped."""
        wanted: list[dict[str, Any]] = []
        for record in records:
            if is_failed(record) and not self.settings.include_failed:
                log.warning("plan.skip_failed_data_set", data_set_id=int(str(record["id"])))
                self.report.skipped_failed += 1
            else:
                wanted.append(record)
        known = stamps.Unchanged(
            stamps.plan_key(self.options, self.sections, self.settings.include_failed)
        )
        seen: seenpages.SeenPages | None = None
        if self.writes and wanted:
            ids = [int(r["id"]) for r in wanted]
            known.stamps = await stamps.read_stamps(self._store(), ids)
            if known.stamps and self.skip_unchanged:
                await self._count_items(known)
            seen = await seenpages.load(self._store())

        def eligible(data_set_id: int, fingerprint: str) -> bool:
            """Skippable undecoded: unchanged with this fingerprint, nothing to reconcile."""
            return (
                self.skip_unchanged
                and known.would_skip(data_set_id, fingerprint)
                and known.settled(data_set_id)
            )

        await seeding.for_each_batch(
            self.client,
            self.settings.api_base,
            wanted,
            lambda batch: self._plan_batch(batch, known, seen),
            page_size=self.settings.page_size,
            known=known.image_counts(),
            parallel=min(self.settings.concurrency, seeding.PARALLEL_QUERIES),
            seen=seen,
            eligible=eligible,
        )
        if seen is not None:
            # Only after every chunk was planned: an interrupted planning keeps the last file,
            # whose queries still need their stamps to match before anything is skipped.
            with metadata_written(seenpages.FILE):
                await seenpages.save(self._store(), seen)
        if self.skipped:
            log.info("plan.unchanged", data_sets=len(self.skipped), undecoded=self.undecoded)

    async def _plan_batch(
        self,
        batch: seeding.Batch,
        known: stamps.Unchanged,
        seen: seenpages.SeenPages | None = None,
    ) -> None:
        """Plan a chunk's changed data sets, record their items in one go, then write their
        tile indexes and their stamped ``dataset.json``; remember the chunk's query in
        ``seen`` when every data set in it ends stamped with its fingerprint."""
        changed: list[_Listing] = []
        fingerprints: dict[int, str] = {}
        for record in batch.records:
            data_set_id = int(record["id"])
            rows = batch.images.get(data_set_id, [])
            # The rows as the API sent them: an unchanged data set is neither checked nor
            # sorted again (crawler/seeding.py), only fingerprinted; one of an undecoded
            # chunk has the fingerprint remembered with the query's pages.
            if batch.same is not None:
                fingerprint = batch.same.listings[data_set_id]
            else:
                fingerprint = stamps.fingerprint(record, rows)
            fingerprints[data_set_id] = fingerprint
            self.undecoded += batch.same is not None
            same = known.unchanged(data_set_id, fingerprint) if self.skip_unchanged else None
            self.report.data_sets += 1
            if same is not None:  # counted as planned, none new: what planning it would report
                if known.settled(data_set_id):
                    self.settled.add(data_set_id)
                else:
                    self.listed[data_set_id] = seeding.listed_ids(rows)
                self.skipped.add(data_set_id)
                self.report.images += same.images
                self.report.skipped_failed += same.failed_images
                self.report.planned += same.items
                self.report.estimated_bytes += same.estimate
                continue
            listing = _Listing(record, rows, fingerprint, self._choose, self.options)
            self.listed[data_set_id] = {int(i["id"]) for i in listing.all_images}
            self.report.images += len(listing.images)
            self.report.skipped_failed += listing.failed
            changed.append(listing)
        if not changed:
            self._remember(seen, batch, fingerprints)
            return
        counts: dict[int, tuple[int, int]] = {}  # data set -> (items, estimated bytes)

        def generate() -> Iterator[Item]:
            for listing in changed:
                count = size = 0
                for item in listing.items(self.options):
                    count += 1
                    size += item.estimate
                    yield item
                counts[listing.id] = (count, size)

        planned, added = await self._record(generate())
        unwritten: set[str] = set()  # roots whose tile indexes failed: not stamped, planned again
        for listing in changed:
            if listing.absent:
                log.info("plan.kinds_not_applicable", data_set_id=listing.id, kinds=listing.absent)
            log.info("plan.data_set", data_set_id=listing.id, images=len(listing.images),
                     items=counts[listing.id][0])  # fmt: skip
            # After the items: a full-resolution image's index lists every tile (tens of MB),
            # and the downloads need not wait for it.
            with metadata_written(listing.root, unwritten):
                await self._write_tile_indexes(listing.root, listing.images, listing.renderings)
        log.info("plan.batch", data_sets=len(changed), items=planned, new=added)
        if self.writes and await self._write_listings(changed, counts, known, unwritten):
            self._remember(seen, batch, fingerprints)

    @staticmethod
    def _remember(
        seen: seenpages.SeenPages | None, batch: seeding.Batch, fingerprints: dict[int, str]
    ) -> None:
        if seen is None or not batch.pages:
            return
        seen.remember(
            seenpages.Query(
                tuple(fingerprints),
                batch.same.records if batch.same else seenpages.records_digest(batch.records),
                tuple(batch.pages),
                fingerprints,
            )
        )

    async def _write_listings(
        self,
        changed: Sequence[_Listing],
        counts: dict[int, tuple[int, int]],
        known: stamps.Unchanged,
        unwritten: set[str],
    ) -> bool:
        """Each data set's ``dataset.json``, stamped unless its other metadata failed; files
        that cannot be written are warnings, as in ``metadata_written``. Whether every one
        was written with its stamp."""
        files = [
            (
                f"{listing.root}/{stamps.FILE}",
                listing.document()
                if listing.root in unwritten
                else known.stamp(
                    listing.document(),
                    listing.fingerprint,
                    items=counts[listing.id][0],
                    estimate=counts[listing.id][1],
                    image_count=len(listing.rows),
                    images=len(listing.images),
                    failed_images=listing.failed,
                ),
            )
            for listing in changed
        ]
        results = await self._store().put_many(files)
        for (path, _), error in zip(files, results, strict=True):
            if error is not None:
                with metadata_written(path.split("/", 1)[0]):
                    raise error
        return not unwritten and not any(results)

    async def _count_items(self, known: stamps.Unchanged) -> None:
        """Each data set's done items, and which have items still to fetch (pending or failed)
        or removed ones: one grouped read of the tally index."""
        assert self.manifest is not None
        for (data_set_id, status), tally in (await self.manifest.tallies_by_data_set()).items():
            if data_set_id is None:
                continue
            if status == Status.DONE.value:
                known.done[data_set_id] = tally.items
            elif status in (Status.PENDING.value, Status.FAILED.value):
                known.open.add(data_set_id)
            elif status == Status.REMOVED.value:
                known.removed.add(data_set_id)

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
def metadata_written(root: str, failed: set[str] | None = None) -> Iterator[None]:
    """A data set's metadata (dataset.json, tile indexes) that cannot be written is a warning
    (and ``root`` joins ``failed``): its items are still planned and fail one by one with the
    same reason, while the rest of the run goes on. A full disk still stops the run."""
    try:
        yield
    except DiskFullError:
        raise
    except StorageError as error:
        if failed is not None:
            failed.add(root)
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
