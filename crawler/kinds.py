"""What each item kind is and how its body is checked: a pure mapping, and one dispatch.

Images must come as image/* and be complete JPEGs; projection grids are NRRD; expression grids
are zips; unionizes are not downloads at all but paged RMA rows (crawler/extras.py).
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

from crawler import validate
from crawler.client import ApiClient, BodyCheck, Fetched, check_jpeg_body
from crawler.extras import fetch_unionizes
from crawler.manifest.repository import Claimed
from crawler.plan import EXPRESSION_GRID, GRID, UNIONIZES
from crawler.store import PartWriter


def check_nrrd_body(writer: PartWriter, url: str) -> None:
    """Projection grid volumes: a NRRD, whole or gzipped."""
    validate.check_nrrd(writer.head, url=url)


def check_zip_body(writer: PartWriter, url: str) -> None:
    """Expression grids: a complete zip."""
    validate.check_zip(writer.head, writer.tail, writer.size, url=url)


_NON_IMAGE: dict[str, BodyCheck] = {GRID: check_nrrd_body, EXPRESSION_GRID: check_zip_body}


def body_check(kind: str) -> tuple[BodyCheck, bool]:
    """(body check, whether the answer must be image/*) for an item kind.

    Every kind that is not a grid is an image (section, expression, projection, annotation,
    and their tiles), including kinds recorded by older versions.
    """
    check = _NON_IMAGE.get(kind)
    return (check, False) if check is not None else (check_jpeg_body, True)


def fetch(client: ApiClient, item: Claimed, url: str, dest: str) -> Awaitable[Fetched]:
    """Fetch one claimed item into ``dest``; raises DownloadFailed when it gives up.

    Returns the download's own coroutine rather than awaiting it: one frame less to resume at
    every step of every download.
    """
    if item.kind == UNIONIZES:
        return fetch_unionizes(client, item.data_set_id, Path(dest))
    check, image = body_check(item.kind)
    return client.download(url, dest, check, image=image)
