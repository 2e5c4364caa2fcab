"""The image queries of the last planning, remembered: what lets a no-op sync skip decoding.

A no-op sync of a whole product receives ~86 MB of SectionImage pages and, before this, decoded
every one of them only to find each data set's fingerprint unchanged (crawler/stamps.py). The
planner now keeps, in one small file at the mirror's root, each image query it sent: the data
sets it asked for, a digest of their records, the sha256 and row count of each page received
and each data set's listing fingerprint, for the queries whose data sets all ended stamped with
that fingerprint. The next run asks the same queries (same data sets, same chunks); a page
whose bytes hash to what was remembered is the page that was decoded then, so the rows are the
same and so is every fingerprint: when each data set's stamp still carries its remembered
fingerprint and its items are all done (``stamps.Unchanged``), the chunk is skipped undecoded.
Any difference (a record, a page, a stamp, the settings) and the chunk is decoded as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crawler import jsoncodec
from crawler.store import Store

FILE = ".seeding-pages.json"
VERSION = 1
LARGEST = 64 * 1024 * 1024  # far above what a product needs (~1 kB per query)


@dataclass(frozen=True, slots=True)
class Query:
    """One image query as planned: its data sets (in order), their records' digest, its
    pages (sha256, rows) in order and each data set's listing fingerprint."""

    ids: tuple[int, ...]
    records: str
    pages: tuple[tuple[str, int], ...]
    listings: dict[int, str]


def records_digest(records: Sequence[dict[str, Any]]) -> str:
    """sha256 of the records as compact JSON (a changed record changes its fingerprint)."""
    return hashlib.sha256(jsoncodec.dumps(list(records))).hexdigest()


def _query(value: Any) -> Query | None:
    """A remembered query from the file's JSON, or None for anything malformed."""
    try:
        ids = tuple(int(i) for i in value["ids"])
        pages = tuple((str(d), int(n)) for d, n in value["pages"])
        listings = {int(k): str(v) for k, v in value["listings"].items()}
        if not ids or not pages or set(listings) != set(ids):
            return None
        return Query(ids, str(value["records"]), pages, listings)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class SeenPages:
    """The last planning's queries (by their first data set) and this planning's."""

    def __init__(self, previous: Sequence[Query] = ()) -> None:
        self.previous = {query.ids[0]: query for query in previous}
        self.current: list[Query] = []

    def chunk_at(self, ids: Sequence[int], start: int) -> int | None:
        """Where the remembered query starting at ``ids[start]`` ends, when it asked for
        exactly the data sets that follow; else None (the chunk is sized afresh)."""
        query = self.previous.get(int(ids[start]))
        if query is None:
            return None
        end = start + len(query.ids)
        return end if tuple(int(i) for i in ids[start:end]) == query.ids else None

    def expected(
        self, records: Sequence[dict[str, Any]], eligible: Callable[[int, str], bool]
    ) -> Query | None:
        """The remembered query for these records, when their records are the same and every
        data set is ``eligible`` with its remembered fingerprint (stamp, settings, items)."""
        ids = tuple(int(r["id"]) for r in records)
        query = self.previous.get(ids[0]) if ids else None
        if query is None or query.ids != ids:
            return None
        if not all(eligible(i, query.listings[i]) for i in ids):
            return None
        if records_digest(records) != query.records:
            return None
        return query

    def remember(self, query: Query) -> None:
        self.current.append(query)

    def document(self) -> bytes:
        queries = [
            {
                "ids": list(q.ids),
                "records": q.records,
                "pages": [list(p) for p in q.pages],
                "listings": {str(k): v for k, v in q.listings.items()},
            }
            for q in self.current
        ]
        return jsoncodec.dumps({"version": VERSION, "queries": queries})


def parse(document: bytes) -> SeenPages:
    """The file's queries; an unreadable or other-version file remembers nothing."""
    try:
        value = jsoncodec.loads(document)
    except ValueError:
        return SeenPages()
    if not isinstance(value, dict) or value.get("version") != VERSION:
        return SeenPages()
    raw = value.get("queries")
    found = [q for q in map(_query, raw if isinstance(raw, list) else []) if q is not None]
    return SeenPages(found)


async def load(store: Store) -> SeenPages:
    """What the last planning remembered (nothing when the file is absent)."""
    (document,) = await store.heads([FILE], LARGEST)
    return SeenPages() if document is None else parse(document)


async def save(store: Store, seen: SeenPages) -> None:
    """Replace the file with this planning's queries (written atomically by the store)."""
    await store.put(FILE, seen.document())
