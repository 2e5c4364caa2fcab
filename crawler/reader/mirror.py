"""Open a mirror (OUT and its manifest) and stream its samples, one data set at a time.

The manifest is async (SQLAlchemy); the reader is for plain loops, so it runs the manifest on
an anyio blocking portal (an event loop in a helper thread) and asks it for one chunk of rows
at a time. Memory holds one data set's records and one image's rows, whatever the mirror's
size: data sets are visited in id order, and each one's done image items are paged by
``(image_id, id)``, so an image's rows arrive together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import and_, func, or_, select

from crawler.listing import open_existing
from crawler.manifest import Manifest, Status
from crawler.manifest.models import items
from crawler.plan import SECTION
from crawler.reader.files import Member, Part
from crawler.reader.grouping import MemberRows, Row, image_members
from crawler.reader.layout import sample_key, tile_directory
from crawler.reader.records import DataSetRecords, read_records
from crawler.reader.samples import KINDS, Sample

CHUNK = 5000  # manifest rows per query
_COLUMNS = (
    items.c.id,
    items.c.path,
    items.c.kind,
    items.c.image_id,
    items.c.size,
    items.c.sha256,
    items.c.url,
    items.c.fetched_at,
)


@dataclass
class ReaderStats:
    """What was read and what was left out, and why (counts of items or samples)."""

    samples: int = 0
    items: Counter[str] = field(default_factory=Counter)  # not done items: failed, removed, ...
    skipped: Counter[str] = field(default_factory=Counter)  # samples left out, by reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "items_not_done": dict(sorted(self.items.items())),
            "samples_skipped": dict(sorted(self.skipped.items())),
        }


@dataclass(frozen=True, slots=True)
class Filters:
    """Which samples to read: kinds of image, data sets, a section range, tiers."""

    kinds: tuple[str, ...] = KINDS
    data_sets: tuple[int, ...] | None = None
    sections: tuple[int, int] | None = None
    tiers: tuple[int, ...] | None = None
    one_tier: bool = False

    def section_ok(self, number: int) -> bool:
        return self.sections is None or self.sections[0] <= number <= self.sections[1]


class Mirror(AbstractContextManager["Mirror"]):
    """A mirror opened for reading. Use as a context manager, or call ``close()``."""

    def __init__(self, out: Path, manifest_url: str) -> None:
        from anyio.from_thread import start_blocking_portal

        self.out = out
        self.manifest_url = manifest_url
        self._stack = ExitStack()
        self._portal = self._stack.enter_context(start_blocking_portal(backend="asyncio"))
        try:
            self._manifest: Manifest = self._portal.call(open_existing, manifest_url)
        except BaseException:
            self._stack.close()
            raise
        self._stack.callback(self._portal.call, self._manifest.close)

    def close(self) -> None:
        """Close the manifest and stop the helper thread."""
        self._stack.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self, statement: Any) -> list[Any]:
        return list(self._portal.call(self._manifest.read, statement))

    def data_set_ids(self, filters: Filters = Filters()) -> list[int]:
        """Data sets with done image items of the wanted kinds, in id order."""
        condition = and_(
            items.c.status == Status.DONE.value,
            items.c.kind.in_(filters.kinds),
            items.c.image_id.is_not(None),
        )
        if filters.data_sets is not None:
            condition = and_(condition, items.c.data_set_id.in_(filters.data_sets))
        rows = self._read(
            select(items.c.data_set_id).where(condition).group_by(items.c.data_set_id)
        )
        return sorted(int(row[0]) for row in rows)

    def not_done(self, filters: Filters = Filters()) -> Counter[str]:
        """Image items of the wanted kinds and data sets that are not done, per status."""
        condition = and_(
            items.c.status != Status.DONE.value,
            items.c.kind.in_(filters.kinds),
            items.c.image_id.is_not(None),
        )
        if filters.data_sets is not None:
            condition = and_(condition, items.c.data_set_id.in_(filters.data_sets))
        rows = self._read(
            select(items.c.status, func.count()).where(condition).group_by(items.c.status)
        )
        return Counter({str(row[0]): int(row[1]) for row in rows})

    def _image_rows(self, data_set_id: int, kinds: tuple[str, ...]) -> Iterator[Row]:
        """Done image items of one data set, ordered by (image_id, id), a chunk at a time."""
        last: tuple[int, int] = (-1, -1)
        while True:
            after = or_(
                items.c.image_id > last[0],
                and_(items.c.image_id == last[0], items.c.id > last[1]),
            )
            statement = (
                select(*_COLUMNS)
                .where(
                    items.c.data_set_id == data_set_id,
                    items.c.status == Status.DONE.value,
                    items.c.kind.in_(kinds),
                    items.c.image_id.is_not(None),
                    after,
                )
                .order_by(items.c.image_id, items.c.id)
                .limit(CHUNK)
            )
            batch = [Row.from_mapping(row._mapping) for row in self._read(statement)]
            if not batch:
                return
            last = (batch[-1].image_id, batch[-1].id)
            yield from batch
            if len(batch) < CHUNK:
                return

    def samples(
        self,
        *,
        kinds: Iterable[str] = KINDS,
        data_sets: Iterable[int] | None = None,
        sections: tuple[int, int] | None = None,
        tiers: Iterable[int] | None = None,
        one_tier: bool = False,
        stats: ReaderStats | None = None,
    ) -> Iterator[Sample]:
        """Every intact sample, by data set id, image id, then tier (coarsest first).

        An image mirrored at several tiers gives a sample per tier (their keys are equal), or
        with ``one_tier`` only its coarsest (of ``tiers``, when given). Only done items count;
        a sample whose files are missing or of the wrong size is skipped and counted in
        ``stats`` (hashes are checked when a member is read).
        """
        filters = Filters(
            kinds=tuple(k for k in KINDS if k in set(kinds)),
            data_sets=tuple(data_sets) if data_sets is not None else None,
            sections=sections,
            tiers=tuple(tiers) if tiers is not None else None,
            one_tier=one_tier,
        )
        stats = stats if stats is not None else ReaderStats()
        stats.items.update(self.not_done(filters))
        for data_set_id in self.data_set_ids(filters):
            yield from self._data_set_samples(data_set_id, filters, stats)

    def _data_set_samples(
        self, data_set_id: int, filters: Filters, stats: ReaderStats
    ) -> Iterator[Sample]:
        records = read_records(self.out, data_set_id)
        rows = self._image_rows(data_set_id, filters.kinds)
        for image_id, image_rows in groupby(rows, key=lambda row: row.image_id):
            by_tier = image_members(image_rows, filters.kinds, filters.tiers)
            image = records.images.get(image_id) if records is not None else None
            if records is None or image is None:
                # Atlas images (their own atlas.json) and images whose records are gone.
                stats.skipped["no_record_in_dataset_json"] += len(by_tier)
                continue
            if not filters.section_ok(int(image.get("section_number") or 0)):
                continue
            for tier, found in by_tier.items():
                if filters.one_tier and tier != next(iter(by_tier)):
                    break
                sample = self._sample(records, image, tier, found, filters, stats)
                if sample is not None:
                    stats.samples += 1
                    yield sample

    def _sample(
        self,
        records: DataSetRecords,
        image: Any,
        tier: int,
        found: dict[str, MemberRows],
        filters: Filters,
        stats: ReaderStats,
    ) -> Sample | None:
        if SECTION in filters.kinds and SECTION not in found:
            stats.skipped["no_section_image"] += 1
            return None
        members: dict[str, Member] = {}
        for kind in filters.kinds:
            if kind not in found:
                continue
            member = self._member(found[kind])
            if member is None:
                stats.skipped["missing_file"] += 1
                return None
            members[kind] = member
        if not members:
            return None
        key = sample_key(records.id, int(image.get("section_number") or 0), int(image["id"]))
        return Sample(key, tier, records, image, members, self.out)

    def _member(self, rows: MemberRows) -> Member | None:
        root = str(self.out)
        parts = tuple(
            Part(f"{root}/{row.path}", row.path, row.size, row.sha256, place.tile)
            for row, place in rows.rows
        )
        if not all(part.intact() for part in parts):
            return None
        index = None
        if rows.tiled:
            index = self.out / tile_directory(rows.rows[0][0].path) / "index.json"
            if not index.is_file():
                return None
        return Member(rows.kind, parts, index, rows.window)


def open_mirror(out: str | Path = "mirror", manifest: str | None = None) -> Mirror:
    """Open the mirror at ``out`` (its manifest: ``manifest``, a SQLAlchemy URL, or the SQLite
    file the mirror carries). A missing manifest is a UsageError, never a new empty one."""
    from crawler.config import Settings

    settings = Settings(out=Path(out), manifest=manifest)
    return Mirror(settings.out, settings.manifest_url)
