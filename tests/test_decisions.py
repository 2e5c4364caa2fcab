"""Table tests of the pure decisions: plan paths and URLs, retry classification, content checks."""

from __future__ import annotations

import pytest

from crawler import validate
from crawler.errors import ContentError, HTTPStatusError, QueryError, StorageError, TransportError
from crawler.plan import PlanOptions
from crawler.retry import classify, parse_retry_after
from tests.planning import plan_section_image, section_image_path

IMAGE = {"id": 102146167, "data_set_id": 100141599, "section_number": 7}


def test_plan_one_item_with_deterministic_path_and_url() -> None:
    (item,) = plan_section_image(IMAGE, PlanOptions(downsample=4))
    assert item.path == "100141599/section/ds4/0007_102146167.jpg"
    assert item.ref == "/api/v2/section_image_download/102146167?downsample=4"
    assert item.url("http://api.brain-map.org") == (
        "http://api.brain-map.org/api/v2/section_image_download/102146167?downsample=4"
    )


def test_plan_quality_goes_into_the_url_and_replanning_is_identical() -> None:
    first = list(plan_section_image(IMAGE, PlanOptions(downsample=2, quality=80)))
    second = list(plan_section_image(IMAGE, PlanOptions(downsample=2, quality=80)))
    assert first == second
    assert first[0].ref.endswith("?downsample=2&quality=80")
    assert first[0].path == "100141599/section/ds2/0007_102146167.jpg"


@pytest.mark.parametrize(
    ("number", "expected"), [(0, "0000_5.jpg"), (12, "0012_5.jpg"), (1234, "1234_5.jpg")]
)
def test_section_number_is_zero_padded(number: int, expected: str) -> None:
    path = section_image_path(9, "section", 0, {"id": 5, "section_number": number})
    assert path == f"9/section/ds0/{expected}"


@pytest.mark.parametrize(
    ("error", "decision"),
    [
        (TransportError("reset"), True),
        (ContentError("html"), True),
        (HTTPStatusError(500), True),
        (HTTPStatusError(502), True),
        (HTTPStatusError(503, retry_after=7.0), 7.0),
        (HTTPStatusError(429, retry_after=1000.0), 300.0),
        (HTTPStatusError(429), True),
        (HTTPStatusError(404), False),
        (HTTPStatusError(400), False),
        (QueryError("bad"), False),
        (StorageError("disk full"), False),
        (ValueError("bug"), False),
    ],
)
def test_classify(error: Exception, decision: bool | float) -> None:
    assert classify(error, retry_after_max=300.0) == decision


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        ("garbage", None),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=40.0) == seconds


@pytest.mark.parametrize(
    ("head", "tail", "size", "ok"),
    [
        (b"\xff\xd8\xff\xe0", b"\x00\xff\xd9", 100, True),
        (b"<html>", b"</html>", 100, False),
        (b"\xff\xd8\xff\xe0", b"\x00\x00\x00", 100, False),
        (b"\xff\xd8", b"\xff\xd9", 2, False),
    ],
)
def test_check_jpeg(head: bytes, tail: bytes, size: int, ok: bool) -> None:
    if ok:
        validate.check_jpeg(head, tail, size, url="u")
    else:
        with pytest.raises(ContentError):
            validate.check_jpeg(head, tail, size, url="u")


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("image/jpeg", True),
        ("image/jpeg; charset=binary", True),
        ("text/html", False),
        (None, False),
    ],
)
def test_check_image_headers(content_type: str | None, ok: bool) -> None:
    if ok:
        validate.check_image_headers(content_type, url="u")
    else:
        with pytest.raises(ContentError):
            validate.check_image_headers(content_type, url="u")
