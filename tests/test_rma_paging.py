"""RMA paging units: short page, empty page, overstated total_rows, success:false, outage pages.

aioresponses fakes only these small JSON exchanges; every transfer test uses the simulator.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aioresponses import aioresponses

from crawler import rma, seed
from crawler.client import ApiClient
from crawler.config import Settings
from crawler.errors import ContentError, QueryError, UnknownDataSetError

BASE = "http://api.test"
QUERY = re.compile(r"^http://api\.test/api/v2/data/query\.json\?criteria=.*$")


def envelope(rows: list[dict[str, Any]], start: int, total: int) -> dict[str, Any]:
    return {
        "success": True,
        "id": 0,
        "start_row": start,
        "num_rows": len(rows),
        "total_rows": total,
        "msg": rows,
    }


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_base": BASE,
        "retries": 2,
        "retry_wait_initial": 0.0,
        "retry_wait_max": 0.0,
        "page_size": 3,
    }
    values.update(overrides)
    return Settings(**values)


def rows(first: int, count: int) -> list[dict[str, Any]]:
    return [{"id": i, "section_number": i} for i in range(first, first + count)]


async def enumerate_with(
    pages: list[Any], **overrides: Any
) -> tuple[list[dict[str, Any]], list[str]]:
    with aioresponses() as mocked:
        for page in pages:
            if isinstance(page, dict):
                mocked.get(QUERY, payload=page)
            else:
                mocked.get(QUERY, **page)
        async with ApiClient.open(settings(**overrides)) as client:
            result = await seed.enumerate_rows(
                client, BASE, seed.section_image_stages(7), page_size=3, what="SectionImage"
            )
        urls = [str(key[1]) for key in mocked.requests]
        calls = [str(call.args) for calls in mocked.requests.values() for call in calls]
        return result, urls + calls


async def test_stops_on_short_page() -> None:
    result, _ = await enumerate_with([envelope(rows(1, 3), 0, 5), envelope(rows(4, 2), 3, 5)])
    assert [r["id"] for r in result] == [1, 2, 3, 4, 5]


async def test_stops_on_empty_page_after_full_pages() -> None:
    result, _ = await enumerate_with(
        [envelope(rows(1, 3), 0, 6), envelope(rows(4, 3), 3, 6), envelope([], 6, 6)]
    )
    assert [r["id"] for r in result] == [1, 2, 3, 4, 5, 6]


async def test_overstated_total_rows_is_not_trusted(caplog: pytest.LogCaptureFixture) -> None:
    # total_rows says 9 but only 4 rows exist: we must stop at the short page, not ask for more.
    result, _ = await enumerate_with([envelope(rows(1, 3), 0, 9), envelope(rows(4, 1), 3, 9)])
    assert [r["id"] for r in result] == [1, 2, 3, 4]


async def test_duplicate_rows_across_pages_are_dropped() -> None:
    result, _ = await enumerate_with(
        [envelope(rows(1, 3), 0, 6), envelope(rows(3, 3), 3, 6), envelope(rows(6, 1), 6, 6)]
    )
    assert [r["id"] for r in result] == [1, 2, 3, 4, 5, 6]


async def test_success_false_is_a_query_error_naming_the_query() -> None:
    with pytest.raises(QueryError) as raised:
        await enumerate_with([{"success": False, "id": -1, "msg": "Data Access error"}])
    assert "Data Access error" in str(raised.value)
    assert raised.value.url is not None and "criteria=" in raised.value.url


async def test_html_outage_page_is_retried_then_accepted() -> None:
    outage = {"status": 200, "body": "<html>site unavailable</html>", "content_type": "text/html"}
    result, _ = await enumerate_with([outage, envelope(rows(1, 2), 0, 2)])
    assert [r["id"] for r in result] == [1, 2]


async def test_malformed_json_gives_up_after_retries() -> None:
    broken = {
        "status": 200,
        "body": '{"success": true, "msg": [',
        "content_type": "application/json",
    }
    with pytest.raises(ContentError):
        await enumerate_with([broken, broken, broken], retries=2)


async def test_unknown_data_set_is_a_usage_error() -> None:
    with aioresponses() as mocked:
        mocked.get(QUERY, payload=envelope([{"id": 5}], 0, 1))
        async with ApiClient.open(settings()) as client:
            with pytest.raises(UnknownDataSetError, match="6"):
                await seed.fetch_data_sets(client, BASE, [5, 6], page_size=50)


@pytest.mark.parametrize(
    ("start", "received", "size", "expected"),
    [(0, 3, 3, 3), (3, 2, 3, None), (6, 0, 3, None), (0, 2000, 2000, 2000)],
)
def test_next_start_row(start: int, received: int, size: int, expected: int | None) -> None:
    assert rma.next_start_row(start, received, size) == expected


def test_query_url_percent_encodes_brackets_quotes_and_parens() -> None:
    url = rma.query_url(
        BASE, "model::SectionImage,rma::criteria,[data_set_id$eq1],rma::options[order$eq'id']"
    )
    assert "[" not in url and "'" not in url
    assert "%5Bdata_set_id$eq1%5D" in url and "%27id%27" in url


def test_parse_page_rejects_envelope_without_rows() -> None:
    with pytest.raises(ContentError):
        rma.parse_page(b'{"success": true, "msg": "x"}', "application/json", url="u")
