"""What each item kind is and how its body is checked: a pure mapping.

Images must come as image/* and be complete JPEGs, their marker structure walked as the chunks
arrive, and at most ``IMAGE_MAX_BYTES``; projection grids and the CCF volumes are NRRD;
expression grids are zips. Two kinds are not plain downloads: unionizes are paged RMA rows
(crawler/extras.py), and the structure graph is checked whole before it is kept
(crawler/ccf.py); their bodies come from a producer instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from crawler import validate
from crawler.ccf import ontology_body
from crawler.client import ApiClient
from crawler.extras import unionizes_body
from crawler.manifest.repository import Claimed
from crawler.plan import CCF_ANNOTATION, CCF_TEMPLATE, EXPRESSION_GRID, GRID, ONTOLOGY, UNIONIZES
from crawler.store import Part

BodyCheck = Callable[[Part, str], None]
BodyProducer = Callable[[ApiClient, Claimed], Awaitable[bytes]]
# The service renders at most tens of megapixels per JPEG (a tile of 8192 x 8192 tier pixels is
# the largest we ask for): a few tens of MB. An image body past this is not an image.
IMAGE_MAX_BYTES = 256 * 1024 * 1024


class StreamCheck(Protocol):
    """Checks a body chunk by chunk while it streams in, then at its end."""

    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> None: ...


class NoStreamCheck:
    """For kinds checked only by head, tail and size once received."""

    def __init__(self, url: str) -> None:
        self.url = url

    def feed(self, chunk: bytes) -> None:
        pass

    def finish(self) -> None:
        pass


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
    """How a kind's answer is accepted: its body check, whether it must be image/*, the check
    that walks it as it streams in, and the largest body it can be (None: the setting's)."""

    check: BodyCheck
    image: bool
    stream_check: Callable[[str], StreamCheck] = NoStreamCheck
    max_bytes: int | None = None

    def limit(self, setting: int) -> int:
        """The size cap of one body of this kind under ``max_item_bytes``."""
        return setting if self.max_bytes is None else min(setting, self.max_bytes)


IMAGE_RULE = BodyRule(
    check_jpeg_body, image=True, stream_check=validate.JpegWalker, max_bytes=IMAGE_MAX_BYTES
)
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
