"""RMA query building and answer parsing: pure functions, so every paging rule is table-tested."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from crawler import jsoncodec
from crawler.errors import ContentError, QueryError

QUERY_PATH = "/api/v2/data/query.json"


def encode_stages(stages: str) -> str:
    """Percent-encode a stage string the way clients do: brackets, quotes, parens, * and spaces."""
    return quote(stages, safe=",:$=._-")


def query_url(api_base: str, stages: str) -> str:
    """The documented query form, ``/api/v2/data/query.json?criteria=<stages>``."""
    return f"{api_base}{QUERY_PATH}?criteria={encode_stages(stages)}"


def options(*, num_rows: int | str, start_row: int = 0, order: str = "id") -> str:
    """An ``rma::options`` stage; order defaults to id so paging is stable."""
    return f"rma::options[num_rows$eq{num_rows}][start_row$eq{start_row}][order$eq'{order}']"


def id_filter(ids: Iterable[int]) -> str:
    """``[id$eqN]`` for one id, ``[id$inA,B,C]`` for several."""
    values = [str(int(i)) for i in ids]
    return f"[id$eq{values[0]}]" if len(values) == 1 else f"[id$in{','.join(values)}]"


@dataclass(frozen=True, slots=True)
class Page:
    """One page of an RMA answer."""

    rows: list[dict[str, Any]]
    start_row: int
    total_rows: int | None
    # sha256 of the body as received: seeding remembers it, so a later run that receives the
    # same bytes again need not decode them (crawler/seenpages.py).
    digest: str = ""
    # The body was the one the caller said it knew (``known``): not decoded, ``rows`` empty.
    same: bool = False


def parse_page(body: bytes, content_type: str, *, url: str) -> Page:
    """Accept only a complete JSON envelope with success:true; say why anything else is wrong."""
    media = content_type.split(";")[0].strip().lower()
    if media and "json" not in media and not media.startswith("text/plain"):
        snippet = body[:200].decode("utf-8", "replace").lower()
        what = "an HTML page" if "<html" in snippet or media == "text/html" else media
        raise ContentError(f"expected JSON, got {what} (service unavailable?)", url=url)
    if not body.strip():
        raise ContentError("empty JSON body", url=url)
    try:
        envelope = jsoncodec.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContentError(f"malformed JSON ({exc.__class__.__name__})", url=url) from exc
    if not isinstance(envelope, dict) or "success" not in envelope:
        raise ContentError("JSON without an RMA envelope", url=url)
    if envelope["success"] is not True:
        message = envelope.get("msg")
        raise QueryError(f"query failed: {message}", url=url)
    rows = envelope.get("msg")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ContentError("RMA envelope without a list of records", url=url)
    total = envelope.get("total_rows")
    start = envelope.get("start_row", 0)
    return Page(
        rows=rows,
        start_row=int(start) if isinstance(start, int | str) and str(start).isdigit() else 0,
        total_rows=int(total) if isinstance(total, int) else None,
    )


def query_failure(body: bytes) -> str | None:
    """The message of an RMA ``success:false`` envelope, whatever HTTP status carried it.

    The live status of a failed query is undocumented (§1); the envelope is what says the
    query itself is wrong, so asking again will not help.
    """
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(envelope, dict) and envelope.get("success") is False:
        return str(envelope.get("msg"))
    return None


def next_start_row(start_row: int, received: int, page_size: int) -> int | None:
    """Where the next page starts, or None once a short or empty page says we are done.

    ``total_rows`` is never consulted: it counts joined rows and can overstate what pages deliver.
    """
    if received < page_size:
        return None
    return start_row + received
