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
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler import jsoncodec
from crawler.errors import DiskFullError, StorageError
from crawler.localstore import OWN_SUFFIX, SYNCFS, storage_error
from crawler.plan import PlanOptions
from crawler.seed import rows_document
from crawler.selection import labels

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


def read_stamps(out: Path, data_set_ids: Iterable[int]) -> dict[int, Stamp]:
    """The stamps of those data sets that have one (blocking: run it in a thread)."""
    found: dict[int, Stamp] = {}
    for data_set_id in data_set_ids:
        try:
            with open(out / str(int(data_set_id)) / FILE, "rb") as handle:
                head = handle.read(HEAD_BYTES)
        except OSError:
            continue
        if (stamp := parse_stamp(head)) is not None:
            found[int(data_set_id)] = stamp
    return found


def write_documents(
    files: Sequence[tuple[Path, bytes]], *, fsync: bool, group_sync: bool = True
) -> list[tuple[Path, StorageError]]:
    """Write several small files atomically, made durable together (blocking); returns the
    files that could not be written and why (a full disk raises: it stops the run).

    Each goes to a part file first; on Linux one ``syncfs(2)`` flushes them all (one journal
    commit instead of one per file, as the store does for downloads), then each is renamed
    into place. A thousand ``dataset.json`` files with one fsync each took seconds.
    """
    written: list[tuple[Path, Path]] = []
    failed: list[tuple[Path, StorageError]] = []
    syncfs = SYNCFS if group_sync and len(files) > 1 else None

    def attempt(dest: Path, step: Callable[[], None]) -> bool:
        try:
            step()
        except OSError as exc:
            error = storage_error(exc, dest)
            if isinstance(error, DiskFullError):
                for part, _ in written:
                    part.unlink(missing_ok=True)
                raise error from exc
            failed.append((dest, error))
            return False
        return True

    for dest, data in files:
        part = dest.with_name(dest.name + OWN_SUFFIX)

        def write(dest: Path = dest, part: Path = part, data: bytes = data) -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with part.open("wb") as handle:
                    handle.write(data)
                    if fsync and syncfs is None:
                        handle.flush()
                        os.fsync(handle.fileno())
            except OSError:
                part.unlink(missing_ok=True)
                raise

        if attempt(dest, write):
            written.append((part, dest))
    if fsync and syncfs is not None and written:
        last = written[-1][0]

        def flush() -> None:
            descriptor = os.open(last, os.O_RDONLY)
            try:
                syncfs(descriptor)
            finally:
                os.close(descriptor)

        if not attempt(written[-1][1], flush):
            for part, _ in written:
                part.unlink(missing_ok=True)
            return failed
    for part, dest in written:

        def rename(part: Path = part, dest: Path = dest) -> None:
            os.replace(part, dest)

        if not attempt(dest, rename):
            part.unlink(missing_ok=True)
    return failed


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

    def unchanged(self, data_set_id: int, listing_fingerprint: str) -> Stamp | None:
        """The data set's stamp when nothing about it changed, else None."""
        old = self.stamps.get(data_set_id)
        if (
            old is None
            or old.fingerprint != listing_fingerprint
            or old.plan != self.plan
            or self.done.get(data_set_id, 0) < old.items
            or data_set_id in self.open
        ):
            return None
        self.skipped += 1
        return old

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
