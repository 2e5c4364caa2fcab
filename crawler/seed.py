"""Seeding: enumerate data sets and their images through RMA, paging by the rules that hold live.

Pages are ordered by id, advanced by the rows received, stopped on a short or empty page and
de-duplicated by id; ``total_rows`` is only compared, never trusted (it counts joined rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from crawler import jsoncodec, records, rma
from crawler.errors import QueryError, UnknownDataSetError, UsageError
from crawler.plan import atlas_root
from crawler.store import Store

log = structlog.get_logger("crawler.seed")

ID_CHUNK = 200


class PageSource(Protocol):
    """What seeding needs of the client: one RMA page per URL, retried."""

    async def get_page(self, url: str, known: str | None = None) -> rma.Page: ...


async def enumerate_rows(
    client: PageSource,
    api_base: str,
    stages: str,
    *,
    page_size: int,
    what: str,
    pages: list[tuple[str, int]] | None = None,
) -> list[dict[str, Any]]:
    """Every row of a query, paged; warns when ``total_rows`` disagrees with what was delivered.
    ``pages`` (when given) receives each page's digest and row count, in order."""
    rows: list[dict[str, Any]] = []
    seen: set[Any] = set()
    start = 0
    total: int | None = None
    while True:
        url = rma.query_url(
            api_base, f"{stages},{rma.options(num_rows=page_size, start_row=start)}"
        )
        page = await client.get_page(url)
        if pages is not None:
            pages.append((page.digest, len(page.rows)))
        if total is None:
            total = page.total_rows
        fresh = 0
        for row in page.rows:
            key = row.get("id")
            if not isinstance(key, int | str):  # malformed: kept for the record checks to name
                key = None
            if key is None or key not in seen:
                seen.add(key)
                rows.append(row)
                fresh += 1
        following = rma.next_start_row(start, len(page.rows), page_size)
        if following is None or fresh == 0:
            break
        start = following
    if total is not None and total != len(rows):
        # Expected on the live service (total_rows counts joined rows): not worth a warning.
        log.debug("rma.total_rows_mismatch", what=what, total_rows=total, delivered=len(rows))
    return rows


# Every SectionDataSet comes with its Equalization (the default colour window), its products
# (connectivity or ISH decides which image kinds and extras exist), its Alignment3d (section
# volume <-> reference space, for ``locate``; null where the API has none) and what people
# filter and label it by: specimen, donor and Cre lines, injections and their structures, genes,
# plane.
DATA_SET_INCLUDES = (
    "rma::include,equalization,products,alignment3d,"
    "specimen(donor(transgenic_lines),stereotaxic_injections(primary_injection_structure,structures)),"
    "genes,plane_of_section"
)


def data_set_stages(ids: Sequence[int]) -> str:
    """SectionDataSet records by id."""
    return f"model::SectionDataSet,rma::criteria,{rma.id_filter(ids)},{DATA_SET_INCLUDES}"


def product_stages(product_id: int) -> str:
    """Every SectionDataSet of a product (5 = Mouse Connectivity Projection)."""
    return (
        f"model::SectionDataSet,rma::criteria,products[id$eq{int(product_id)}],{DATA_SET_INCLUDES}"
    )


def criteria_stages(criteria: str) -> str:
    """SectionDataSets matching free criteria, e.g. ``genes[acronym$eq'Pdyn']``."""
    return f"model::SectionDataSet,rma::criteria,{criteria},{DATA_SET_INCLUDES}"


def atlas_image_stages(atlas_id: int) -> str:
    """The AtlasImages of an Atlas, through its atlas data set (§2)."""
    return f"model::AtlasImage,rma::criteria,atlas_data_set(atlases[id$eq{int(atlas_id)}])"


def section_image_stages(data_set_id: int) -> str:
    """The SectionImages of one data set, each with its Alignment2d (image pixels <-> section
    volume; null where the API has none): the same pages, no request per image."""
    return (
        f"model::SectionImage,rma::criteria,[data_set_id$eq{int(data_set_id)}],"
        "rma::include,alignment2d"
    )


async def fetch_data_sets(
    client: PageSource,
    api_base: str,
    ids: Sequence[int],
    *,
    page_size: int,
    on_missing: Callable[[list[int]], None] | None = None,
) -> list[dict[str, Any]]:
    """The records of the requested data sets, in the order asked; unknown ids are a usage
    error, or (``--ignore-missing``) handed to ``on_missing`` and left out."""
    found: dict[int, dict[str, Any]] = {}
    unique = list(dict.fromkeys(int(i) for i in ids))
    for start in range(0, len(unique), ID_CHUNK):
        chunk = unique[start : start + ID_CHUNK]
        rows = await enumerate_rows(
            client, api_base, data_set_stages(chunk), page_size=page_size, what="SectionDataSet"
        )
        found.update({int(r["id"]): r for r in data_set_records(rows)})
    missing = [i for i in unique if i not in found]
    if missing and on_missing is not None:
        on_missing(missing)
    elif missing:
        listed = ", ".join(str(i) for i in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise UnknownDataSetError(
            f"no SectionDataSet with id {listed}{more} at {api_base} "
            "(--ignore-missing skips unknown ids and fetches the rest)"
        )
    return [found[i] for i in unique if i in found]


async def fetch_section_images(
    client: PageSource, api_base: str, data_set_id: int, *, page_size: int
) -> list[dict[str, Any]]:
    """A data set's SectionImages, ordered by section number then id."""
    rows = await enumerate_rows(
        client,
        api_base,
        section_image_stages(data_set_id),
        page_size=page_size,
        what="SectionImage",
    )
    rows = image_records(rows, "SectionImage", data_set_id)
    return sorted(rows, key=lambda r: (int(r.get("section_number") or 0), int(r["id"])))


async def fetch_product_data_sets(
    client: PageSource, api_base: str, product_id: int, *, page_size: int
) -> list[dict[str, Any]]:
    """A product's SectionDataSets in id order; a product without any is a usage error."""
    rows = await enumerate_rows(
        client, api_base, product_stages(product_id), page_size=page_size, what="SectionDataSet"
    )
    rows = data_set_records(rows)
    if not rows:
        raise UsageError(f"no SectionDataSet in product {product_id} at {api_base}")
    return rows


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


async def fetch_criteria_data_sets(
    client: PageSource, api_base: str, criteria: str, *, page_size: int, option: str = "--criteria"
) -> list[dict[str, Any]]:
    """SectionDataSets matching criteria; criteria the API rejects are a usage error."""
    try:
        rows = await enumerate_rows(
            client, api_base, criteria_stages(criteria), page_size=page_size, what="SectionDataSet"
        )
    except QueryError as exc:
        reason = _one_line(str(exc).removeprefix("query failed: "))
        raise UsageError(f"the API rejected {option} {criteria!r}: {reason}") from exc
    rows = data_set_records(rows)
    if not rows:
        log.warning("seed.criteria_matched_nothing", criteria=criteria)
    return rows


async def fetch_atlas_images(
    client: PageSource, api_base: str, atlas_id: int, *, page_size: int
) -> list[dict[str, Any]]:
    """An atlas's AtlasImages ordered by section number then id; none is a usage error."""
    rows = await enumerate_rows(
        client, api_base, atlas_image_stages(atlas_id), page_size=page_size, what="AtlasImage"
    )
    rows = image_records(rows, "AtlasImage")
    if not rows:
        raise UsageError(f"no AtlasImage in atlas {atlas_id} at {api_base}")
    return sorted(rows, key=lambda r: (int(r.get("section_number") or 0), int(r["id"])))


def data_set_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SectionDataSet records planning can trust; malformed ones skipped with a warning."""
    return records.usable(rows, "SectionDataSet", records.check_data_set)


def image_records(
    rows: list[dict[str, Any]], model: str, data_set_id: int | None = None
) -> list[dict[str, Any]]:
    """Image records planning can trust (of ``data_set_id``); malformed ones skipped."""
    return records.usable(rows, model, lambda row: records.check_image(row, data_set_id))


def rows_document(head: dict[str, Any], key: str, rows: list[dict[str, Any]]) -> bytes:
    """A JSON object whose ``key`` lists ``rows`` one per line, keys sorted: readable, and
    grep finds an id (``"id":N``).

    ``json.dumps(indent=...)`` would be as readable but runs the pure-Python encoder, about a
    second of CPU per 5,000 images; each line here is encoded whole (``crawler/jsoncodec.py``).
    """
    fields = [b"%s:%s" % (jsoncodec.dumps_sorted(name), jsoncodec.dumps_sorted(value))
              for name, value in head.items()]  # fmt: skip
    lines = b",\n".join(jsoncodec.dumps_sorted(row) for row in rows)
    return b"{" + b",".join(fields) + b",%s:[\n%s\n]}\n" % (jsoncodec.dumps_sorted(key), lines)


async def save_atlas_seed(store: Store, atlas_id: int, images: list[dict[str, Any]]) -> None:
    """``OUT/atlas_<atlas id>/atlas.json``: the AtlasImage records as the API gave them."""
    data = rows_document({"atlas_id": atlas_id}, "atlas_images", images)
    await store.put(f"{atlas_root(atlas_id)}/atlas.json", data)
