"""What each item kind is and how its body is checked: a pure mapping.

Images must come as image/* and be complete JPEGs; projection grids and the CCF volumes are
NRRD; expression grids are zips. Two kinds are not plain downloads: unionizes are paged RMA
rows (crawler/extras.py), and the structure graph is checked whole before it is kept
(crawler/ccf.py); their bodies come from a producer instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from crawler import validate
from crawler.ccf import ontology_body
from crawler.client import ApiClient
from crawler.extras import unionizes_body
from crawler.manifest.repository import Claimed
from crawler.plan import CCF_ANNOTATION, CCF_TEMPLATE, EXPRESSION_GRID, GRID, ONTOLOGY, UNIONIZES
from crawler.store import Part

BodyCheck = Callable[[Part, str], None]
BodyProducer = Callable[[ApiClient, Claimed], Awaitable[bytes]]


def check_jpeg_body(part: Part, url: str) -> None:
    """Every image kind: a complete JPEG."""
    validate.check_jpeg(part.head, part.tail, part.size, url=url)


def check_nrrd_body(part: Part, url: str) -> None:
    """Projection grid and CCF volumes: a NRRD, whole or gzipped."""
    validate.check_nrrd(part.head, url=url)


def check_zip_body(part: Part, url: str) -> None:
    """Expression grids: a complete zip."""
    validate.check_zip(part.head, part.tail, part.size, url=url)


@dataclass(frozen=True, slots=True)
class BodyRule:
    """How a kind's answer is accepted: its body check, and whether it must be image/*."""

    check: BodyCheck
    image: bool


IMAGE_RULE = BodyRule(check_jpeg_body, image=True)
NRRD_RULE = BodyRule(check_nrrd_body, image=False)
_NON_IMAGE = {
    GRID: NRRD_RULE,
    CCF_ANNOTATION: NRRD_RULE,
    CCF_TEMPLATE: NRRD_RULE,
    EXPRESSION_GRID: BodyRule(check_zip_body, image=False),
}


def body_rule(kind: str) -> BodyRule:
    """Every kind that is not a grid or volume is an image (section, expression, projection,
    annotation drawings, and their tiles), including kinds recorded by older versions."""
    return _NON_IMAGE.get(kind, IMAGE_RULE)


async def _unionizes(client: ApiClient, item: Claimed) -> bytes:
    return await unionizes_body(client, item.data_set_id, item.path)


_PRODUCERS: dict[str, BodyProducer] = {UNIONIZES: _unionizes, ONTOLOGY: ontology_body}


def body_producer(kind: str) -> BodyProducer | None:
    """The producer of a kind whose body is assembled or checked whole, not streamed."""
    return _PRODUCERS.get(kind)
