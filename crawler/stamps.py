"""``dataset.json`` as the stamp of a planned listing: what lets a no-op sync skip a data set.

A data set's ``dataset.json`` holds what the API listed (its record and its SectionImages).
Its first line now also carries a stamp: a fingerprint of that listing, a key of the settings that
shaped its items, how many items they were and how many images were listed. The planner reads
the stamps back (the first few hundred bytes of each file) before planning; a data set whose
listing and settings are unchanged, and whose items are all done, is neither re-planned nor
re-inserted, and its file is not rewritten. A stamp is written only after the
data set's items are committed to the manifest, so it never vouches for items that are not
there; a file without a stamp (older mirrors) just means "plan it".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crawler import jsoncodec
from crawler.plan import PlanOptions
from crawler.seed import rows_document
from crawler.selection import labels
from crawler.store import Store

FILE = "dataset.json"
HEAD_BYTES = 400  # the stamp fits in the first line's first ~270 bytes
_STAMP = re.compile(
    rb'\{"fingerprint": "([0-9a-f]{64})", "plan": "([0-9a-f]{64})", '
    rb'"items": (\d+), "estimate": (\d+), "image_count": (\d+), "images": (\d+), '
    rb'"failed_images": (\d+), '
)


@dataclass(frozen=True, slots=True)
class Stamp:
    """What the last planning of a data set recorded at the head of its ``dataset.json``."""

    fingerprint: str  # sha256 of the listing (record and images as the API gave them)
    plan: str  # plan_key of the settings that made its items
    items: int  # items planned from it
    estimate: int  # their estimated bytes (a skipped data set still counts in the plan summary)
    image_count: int  # SectionImage rows listed (sizes the next run's queries)
    images: int  # images planned (within --sections; failed ones only with --include-failed)
    failed_images: int  # failed images left out: a skipped data set still counts in the report


def listing_document(record: dict[str, Any], images: list[dict[str, Any]]) -> bytes:
    """The listing as ``dataset.json`` keeps it, without the stamp."""
    head = {
        "data_set": record,
        "equalization": record.get("equalization"),
        "labels": labels(record),
    }
    return rows_document(head, "section_images", images)


def fingerprint(record: dict[str, Any], images: list[dict[str, Any]]) -> str:
    """The sha256 of the listing's values as compact JSON, objects' keys in the order sent.

    Every sync computes it for every data set, so it must be cheap: the sorted JSON that
    ``dataset.json`` holds took ~100 ms per 2,000 images with the standard library, this
    ~3 ms with orjson (``crawler/jsoncodec.py``). Equal values give equal bytes; keys sent
    in another order only make the data set plan once more.
    """
    return hashlib.sha256(jsoncodec.dumps([record, images])).hexdigest()


def plan_key(options: PlanOptions, sections: tuple[int, int] | None, include_failed: bool) -> str:
    """The settings that decide a data set's items: other kinds, tiles or sections re-plan it."""
    text = repr((options, sections, include_failed))
    return hashlib.sha256(text.encode()).hexdigest()


def stamped(document: bytes, stamp: Stamp) -> bytes:
    """The document with its stamp as the first keys (so reading it back takes one small read)."""
    head = (
        f'{{"fingerprint": "{stamp.fingerprint}", "plan": "{stamp.plan}", '
        f'"items": {stamp.items}, "estimate": {stamp.estimate}, '
        f'"image_count": {stamp.image_count}, "images": {stamp.images}, '
        f'"failed_images": {stamp.failed_images}, '
    )
    return head.encode() + document[1:]


def parse_stamp(head: bytes) -> Stamp | None:
    """The stamp at the start of a ``dataset.json``, or None (none, or another format)."""
    match = _STAMP.match(head)
    if match is None:
        return None
    return Stamp(match[1].decode(), match[2].decode(), *(int(match[i]) for i in range(3, 8)))


async def read_stamps(store: Store, data_set_ids: Iterable[int]) -> dict[int, Stamp]:
    """The stamps of those data sets that have one: the head of each ``dataset.json``."""
    ids = [int(i) for i in data_set_ids]
    heads = await store.heads([f"{i}/{FILE}" for i in ids], HEAD_BYTES)
    return {
        data_set_id: stamp
        for data_set_id, head in zip(ids, heads, strict=True)
        if head is not None and (stamp := parse_stamp(head)) is not None
    }


class Unchanged:
    """Decides which data sets need no planning: same listing, same settings, items all done.

    ``done`` counts each data set's done items in the manifest: a manifest deleted or replaced
    under an intact output directory makes every data set plan again. ``open`` names the data
    sets with items still to fetch (pending or failed): a skipped data set's items are not
    tagged with the run, and a run fetches only what it tagged, so an interrupted run's data
    sets are planned again by the next one.
    """

    def __init__(self, plan: str) -> None:
        self.plan = plan
        self.stamps: dict[int, Stamp] = {}
        self.done: dict[int, int] = {}
        self.open: set[int] = set()
        self.removed: set[int] = set()
        self.skipped = 0

    def image_counts(self) -> dict[int, int]:
        """Images each data set listed last time: what sizes this run's image queries."""
        return {data_set_id: s.image_count for data_set_id, s in self.stamps.items()}

    def would_skip(self, data_set_id: int, listing_fingerprint: str) -> bool:
        """Whether nothing about the data set changed, if its listing has this fingerprint."""
        old = self.stamps.get(data_set_id)
        return not (
            old is None
            or old.fingerprint != listing_fingerprint
            or old.plan != self.plan
            or self.done.get(data_set_id, 0) < old.items
            or data_set_id in self.open
        )

    def unchanged(self, data_set_id: int, listing_fingerprint: str) -> Stamp | None:
        """The data set's stamp when nothing about it changed, else None."""
        if not self.would_skip(data_set_id, listing_fingerprint):
            return None
        self.skipped += 1
        return self.stamps[data_set_id]

    def settled(self, data_set_id: int) -> bool:
        """Whether an unchanged data set's items are exactly those its listing planned, all
        done, none removed: then a sync has nothing to reconcile there.

        Each path of the listing's items has one live item, in the data set, done (nothing is
        pending or failed), so its done items number at least the stamp's; any more would be
        items of images the listing may not hold (another selection's kinds, an older
        listing), and a removed item may be listed again: both need the reconciliation.
        """
        stamp = self.stamps.get(data_set_id)
        return (
            stamp is not None
            and self.done.get(data_set_id, 0) == stamp.items
            and data_set_id not in self.removed
        )

    def stamp(self, document: bytes, fingerprint: str, **counts: int) -> bytes:
        """The ``dataset.json`` to write for a data set just planned (``counts``: the stamp's
        items, estimate, image_count, images and failed_images)."""
        return stamped(document, Stamp(fingerprint, self.plan, **counts))
