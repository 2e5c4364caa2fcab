"""What each item kind is and how its body is checked: a pure mapping.

Images must come as image/* and be complete JPEGs; projection grids are NRRD; expression grids
are zips; unionizes are not downloads at all but paged RMA rows (crawler/extras.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from crawler import validate
from crawler.plan import EXPRESSION_GRID, GRID
from crawler.store import Part

BodyCheck = Callable[[Part, str], None]


def check_jpeg_body(part: Part, url: str) -> None:
    """Every image kind: a complete JPEG."""
    validate.check_jpeg(part.head, part.tail, part.size, url=url)


def check_nrrd_body(part: Part, url: str) -> None:
    """Projection grid volumes: a NRRD, whole or gzipped."""
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
_NON_IMAGE = {
    GRID: BodyRule(check_nrrd_body, image=False),
    EXPRESSION_GRID: BodyRule(check_zip_body, image=False),
}


def body_rule(kind: str) -> BodyRule:
    """Every kind that is not a grid is an image (section, expression, projection, annotation,
    and their tiles), including kinds recorded by older versions."""
    return _NON_IMAGE.get(kind, IMAGE_RULE)
