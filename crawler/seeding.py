"""Batched seeding: the SectionImages of many data sets per RMA query, several queries at once.

A whole product is thousands of data sets; one query per data set made seeding the slowest
part of a mirror (1,003 requests for 1,002 data sets, issue 16). Here a query asks for the
images of as many data sets as about one page holds (``[data_set_id$in...]``), sized by the
image counts known from the last run's ``dataset.json`` or by an estimate that the answers
refine; every query keeps the paging rules of ``crawler/seed.py`` (order by id, advance by
rows received, stop on a short page, de-duplicate, never trust ``total_rows``), keeps its URL
under what Apache accepts, and several run at once. Images come back in id order across the
chunk's data sets, so a data set is complete when its chunk is: the planner gets one chunk
(about a page of rows) at a time and never holds a whole product.

Deciding (how many data sets per query) is pure and table-tested; the async part only asks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from crawler import records as checks
from crawler import rma, seed
from crawler.errors import first_error
from crawler.seenpages import Query, SeenPages

log = structlog.get_logger("crawler.seeding")

# Apache refuses a request line over 8,190 bytes (LimitRequestLine); leave room for the
# method, the protocol and a proxy's additions.
URL_LIMIT = 7_600
# An estimated chunk aims at this share of a page, so a chunk a little larger than its
# estimate still fits one request instead of needing a second, nearly empty page.
PAGE_FILL = 0.9
# Images per data set before any answer came: a connectivity series (~140 sections). Too high
# only makes the first query small; the answers correct it at once.
FIRST_ESTIMATE = 140.0
# Image queries in flight at once: enough to cover the latency and the server's time per page
# (8 left a no-op sync of 100,000 images ~0.8 s slower), few enough that the chunks waiting to
# be planned (about a page each, ~10 MB decoded) stay small.
PARALLEL_QUERIES = 16
# The widest start_row a URL may carry, for its length.
_WIDEST_START = 10**12


def image_stages(data_set_ids: Sequence[int]) -> str:
    """The SectionImages (with Alignment2d) of several data sets: the single-data-set query
    of ``seed.section_image_stages`` with ``$in``."""
    if len(data_set_ids) == 1:
        return seed.section_image_stages(data_set_ids[0])
    values = ",".join(str(int(i)) for i in data_set_ids)
    return f"model::SectionImage,rma::criteria,[data_set_id$in{values}],rma::include,alignment2d"


def page_url(api_base: str, stages: str, page_size: int, start_row: int = 0) -> str:
    """The URL of one page of a query, as ``seed.enumerate_rows`` builds it."""
    return rma.query_url(
        api_base, f"{stages},{rma.options(num_rows=page_size, start_row=start_row)}"
    )


def id_room(api_base: str, page_size: int, limit: int | None = None) -> int:
    """Characters left for the comma-joined ids of an image query's ``$in`` list.

    Digits and commas are not percent-encoded, so every id costs its digits plus a comma.
    """
    fixed = len(page_url(api_base, image_stages([0, 0]), page_size, _WIDEST_START)) - len("0,0")
    return (URL_LIMIT if limit is None else limit) - fixed


def next_chunk(
    ids: Sequence[int],
    counts: Sequence[int | None],
    *,
    start: int,
    estimate: float,
    page_rows: int,
    room: int,
) -> int:
    """Where the chunk starting at ``start`` ends: as many data sets as one page holds.

    A data set weighs its known image count, or ``estimate / PAGE_FILL`` when unknown; the
    chunk takes data sets while their weights stay under ``page_rows`` (a page holding exactly
    ``page_rows`` rows needs one more request to learn it was the last) and their ids fit in
    ``room`` characters of URL. Always at least one data set.
    """
    end, rows, chars = start, 0.0, -1
    while end < len(ids):
        count = counts[end]
        weight = float(count) if count is not None else estimate / PAGE_FILL
        width = len(str(int(ids[end]))) + 1
        if end > start and (rows + weight > page_rows - 1 or chars + width > room):
            break
        rows, chars, end = rows + weight, chars + width, end + 1
    return end


@dataclass
class Estimator:
    """Images per data set, as the answers so far say (the known counts do not need it)."""

    data_sets: int = 0
    images: int = 0
    first: float = FIRST_ESTIMATE

    def observe(self, data_sets: int, images: int) -> None:
        self.data_sets += data_sets
        self.images += images

    @property
    def known(self) -> bool:
        return self.data_sets > 0

    @property
    def estimate(self) -> float:
        if not self.data_sets:
            return self.first
        return max(1.0, self.images / self.data_sets)


@dataclass(frozen=True, slots=True)
class Chunk:
    """The data sets one image query asks for."""

    records: list[dict[str, Any]]

    @property
    def ids(self) -> list[int]:
        return [int(r["id"]) for r in self.records]


@dataclass(slots=True)
class Batch:
    """A chunk's data sets, each with its SectionImage rows as the API sent them (in id
    order): ``usable_images`` checks and sorts those of the data sets that are planned.
    ``pages`` are the query's pages (sha256, rows); ``same`` says they were the remembered
    query's (crawler/seenpages.py), so nothing was decoded and ``images`` is empty."""

    records: list[dict[str, Any]]
    images: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    pages: list[tuple[str, int]] = field(default_factory=list)
    same: Query | None = None


def group_images(records: Sequence[dict[str, Any]], rows: Sequence[object]) -> Batch:
    """Rows of an ``$in`` query, back to their data sets, unchecked: a data set whose rows did
    not change since its last planning (crawler/stamps.py) needs no checks at all, and a
    whole product is 100,000 rows every sync. A row whose ``data_set_id`` is not one of the
    chunk's as it stands (a string, junk, another data set) is checked at once, as
    ``crawler/records.py`` says: a malformed one, or one of a data set not asked for, is
    skipped with a warning."""
    images: dict[int, list[dict[str, Any]]] = {int(r["id"]): [] for r in records}
    strays: list[object] = []
    for row in rows:
        if (
            type(row) is dict
            and type(key := row.get("data_set_id")) is int
            and (owner := images.get(key)) is not None
        ):
            owner.append(row)
        else:
            strays.append(row)

    def check(row: object) -> dict[str, Any] | str:
        checked = checks.check_image(row)
        if isinstance(checked, str) or checked["data_set_id"] in images:
            return checked
        return f"data_set_id {checked['data_set_id']} was not asked for"

    for row in checks.usable(strays, "SectionImage", check):
        images[row["data_set_id"]].append(row)
    return Batch(list(records), images)


def usable_images(rows: Sequence[object]) -> list[dict[str, Any]]:
    """A data set's image rows that pass ``crawler/records.py``'s checks (each refused one a
    warning), ordered by section number then id."""
    found = checks.usable(rows, "SectionImage", checks.check_image)
    return sorted(found, key=lambda r: (int(r.get("section_number") or 0), int(r["id"])))


def listed_ids(rows: Sequence[dict[str, Any]]) -> set[int]:
    """The whole-number ids among a data set's image rows: what the API lists for it now."""
    found: set[int] = set()
    for row in rows:
        if (number := checks.whole(row.get("id"), 1, checks.MAX_ID)) is not None:
            found.add(number)
    return found


def chunks(
    records: Sequence[dict[str, Any]],
    known: Mapping[int, int],
    estimator: Estimator,
    *,
    api_base: str,
    page_size: int,
    seen: SeenPages | None = None,
) -> Callable[[int], tuple[Chunk, int]]:
    """A function giving the chunk that starts at a position and where the next one starts:
    the last planning's query when it asked for the same data sets (``seen``), so its pages
    can be recognised, else sized by the estimate of the moment (which improves as answers
    come in)."""
    ids = [int(r["id"]) for r in records]
    counts = [known.get(i) for i in ids]
    room = id_room(api_base, page_size)

    def at(start: int) -> tuple[Chunk, int]:
        if seen is not None and (end := seen.chunk_at(ids, start)) is not None:
            return Chunk(list(records[start:end])), end
        end = next_chunk(
            ids,
            counts,
            start=start,
            estimate=estimator.estimate,
            page_rows=page_size,
            room=room,
        )
        if seen is not None:  # stop where a remembered query starts: it may be recognised
            end = next((k for k in range(start + 1, end) if seen.chunk_at(ids, k)), end)
        return Chunk(list(records[start:end])), end

    return at


async def for_each_batch(
    client: seed.PageSource,
    api_base: str,
    records: Sequence[dict[str, Any]],
    consume: Callable[[Batch], Awaitable[None]],
    *,
    page_size: int,
    known: Mapping[int, int] | None = None,
    parallel: int = PARALLEL_QUERIES,
    seen: SeenPages | None = None,
    eligible: Callable[[int, str], bool] | None = None,
) -> None:
    """Fetch the images of ``records`` a chunk per query, ``parallel`` queries at a time, and
    hand each chunk's data sets to ``consume`` as its last page arrives (in completion order).

    A chunk the last planning asked for (``seen``) whose data sets are all ``eligible`` (their
    stamps still vouch for the remembered fingerprints) is first asked for page by page with
    the remembered digests: when every page comes back the same, it is handed on undecoded
    (``Batch.same``); at the first page that differs, the query is asked again as usual.

    While no count is known the first query goes alone, so the others are sized by what it
    found. At most ``parallel`` fetched chunks wait for ``consume``: memory stays at a few
    pages of rows however large the product.
    """
    if not records:
        return
    estimator = Estimator()
    chunk_at = chunks(
        records, known or {}, estimator, api_base=api_base, page_size=page_size, seen=seen
    )
    send, receive = anyio.create_memory_object_stream[Batch](parallel)
    slots = anyio.Semaphore(max(1, parallel))

    async def fetch(chunk: Chunk) -> Batch:
        stages = image_stages(chunk.ids)
        remembered = None
        if seen is not None and eligible is not None:
            remembered = seen.expected(chunk.records, eligible)
        if remembered is not None and await same_pages(
            client, api_base, stages, remembered.pages, page_size
        ):
            estimator.observe(len(chunk.records), sum(rows for _, rows in remembered.pages))
            return Batch(chunk.records, pages=list(remembered.pages), same=remembered)
        pages: list[tuple[str, int]] = []
        rows = await seed.enumerate_rows(
            client, api_base, stages, page_size=page_size, what="SectionImage", pages=pages
        )
        estimator.observe(len(chunk.records), len(rows))
        batch = group_images(chunk.records, rows)
        batch.pages = pages
        return batch

    async def worker(chunk: Chunk) -> None:
        try:  # the slot is held until the batch is handed on: fetched chunks stay few
            await send.send(await fetch(chunk))
        finally:
            slots.release()

    async def produce() -> None:
        async with send, anyio.create_task_group() as fetching:
            start = 0
            while start < len(records):
                chunk, start = chunk_at(start)
                await slots.acquire()
                if not estimator.known and not all(i in (known or {}) for i in chunk.ids):
                    await worker(chunk)  # the probe: later chunks are sized by its answer
                else:
                    fetching.start_soon(worker, chunk)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(produce)
            async with receive:
                async for batch in receive:
                    await consume(batch)
    except BaseExceptionGroup as group_error:
        # A failed query (or planning error) is one error for the caller, as it was when
        # seeding went a data set at a time.
        raise first_error(group_error) from None


async def same_pages(
    client: seed.PageSource,
    api_base: str,
    stages: str,
    pages: Sequence[tuple[str, int]],
    page_size: int,
) -> bool:
    """Whether the query's pages are still the remembered ones (sha256 and rows each), asked
    in order as ``seed.enumerate_rows`` would; stops at the first that differs."""
    start = 0
    for digest, rows in pages:
        page = await client.get_page(page_url(api_base, stages, page_size, start), known=digest)
        if not page.same:
            return False
        start = rma.next_start_row(start, rows, page_size) or start
    return True


async def fetch_data_sets(
    client: seed.PageSource,
    api_base: str,
    ids: Sequence[int],
    *,
    page_size: int,
    parallel: int = PARALLEL_QUERIES,
    on_missing: Callable[[list[int]], None] | None = None,
) -> list[dict[str, Any]]:
    """``seed.fetch_data_sets`` for many ids: its chunks of ``seed.ID_CHUNK`` ids (with every
    include) asked ``parallel`` at a time; records in the order asked; unknown ids an error, or
    (``--ignore-missing``) handed to ``on_missing`` once, in the order asked."""
    unique = list(dict.fromkeys(int(i) for i in ids))
    chunks = [unique[i : i + seed.ID_CHUNK] for i in range(0, len(unique), seed.ID_CHUNK)]
    if len(chunks) < 2:
        return await seed.fetch_data_sets(
            client, api_base, unique, page_size=page_size, on_missing=on_missing
        )
    found: dict[int, dict[str, Any]] = {}
    missing: set[int] = set()
    collect = missing.update if on_missing is not None else None
    limiter = anyio.CapacityLimiter(max(1, parallel))

    async def fetch(chunk: list[int]) -> None:
        async with limiter:
            rows = await seed.fetch_data_sets(
                client, api_base, chunk, page_size=page_size, on_missing=collect
            )
        found.update((int(r["id"]), r) for r in rows)

    try:
        async with anyio.create_task_group() as group:
            for chunk in chunks:
                group.start_soon(fetch, chunk)
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    if missing and on_missing is not None:
        on_missing([i for i in unique if i in missing])
    return [found[i] for i in unique if i in found]


__all__ = ["Batch", "Estimator", "fetch_data_sets", "for_each_batch", "image_stages", "next_chunk"]
