"""Table tests of the JPEG structure walk: what may follow an FF inside the image data, however
the body is cut into chunks."""

from __future__ import annotations

import pytest

from crawler.errors import ContentError
from crawler.validate import JpegWalker

START = b"\xff\xd8"
FRAME = b"\xff\xc0\x00\x0b\x08\x00\x10\x00\x10\x01\x01\x11\x00"  # SOF0, one component
SCAN = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"  # SOS, one component
TABLE = b"\xff\xc4\x00\x03\x00"  # DHT with one payload byte
END = b"\xff\xd9"


def jpeg(data: bytes, after: bytes = END) -> bytes:
    """A body whose one scan holds ``data``, followed by ``after``."""
    return START + FRAME + SCAN + data + after


def walk(chunks: list[bytes]) -> str | None:
    """Feed the chunks and finish; the error's text, or None when the body is accepted."""
    walker = JpegWalker("u")
    try:
        for chunk in chunks:
            walker.feed(chunk)
        walker.finish()
    except ContentError as error:
        return str(error)
    return None


def cuts(body: bytes) -> list[list[bytes]]:
    """The body whole, in two chunks at every place, and one byte at a time."""
    return [
        [body],
        *([body[:at], body[at:]] for at in range(1, len(body))),
        [body[at : at + 1] for at in range(len(body))],
    ]


ACCEPTED = {
    "plain data": jpeg(b"\x12\x34\x56"),
    "no data": jpeg(b""),
    "FF 00 stuffing": jpeg(b"\x12\xff\x00\x34\xff\x00"),
    "stuffing only": jpeg(b"\xff\x00\xff\x00\xff\x00"),
    "restart markers": jpeg(b"\x12\xff\xd0\x34\xff\xd7\x56\xff\xd3"),
    "FF FF fill before the end marker": jpeg(b"\x12\xff\x00", b"\xff\xff\xff" + END),
    "a second scan after a table": jpeg(b"\x12\xff\x00", TABLE + SCAN + b"\x56\xff\xd1" + END),
}


@pytest.mark.parametrize("body", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_well_formed_body_is_accepted_however_it_is_cut(body: bytes) -> None:
    for chunks in cuts(body):
        assert walk(chunks) is None, chunks


REFUSED = {
    "data after the end marker": (jpeg(b"\x12\xff\x00", END + b"\x00"), "data after the end"),
    "a marker ends the scan early": (jpeg(b"\x12\xff\xd9\x34"), "data after the end"),
    "a stray start marker in the data": (jpeg(b"\x12\xff\xd8\x34"), "a second start marker"),
    "the body ends on an FF": (jpeg(b"\x12\xff", b""), "no FF D9 end marker"),
    "the body ends in the data": (jpeg(b"\x12\xff\x00\x34", b""), "no FF D9 end marker"),
    "a segment with a bad length": (jpeg(b"\x12", b"\xff\xc4\x00\x01" + END), "length 1"),
}


@pytest.mark.parametrize(("body", "problem"), REFUSED.values(), ids=REFUSED.keys())
def test_a_broken_body_is_refused_the_same_way_however_it_is_cut(body: bytes, problem: str) -> None:
    whole = walk([body])
    assert whole is not None and problem in whole
    for chunks in cuts(body):
        assert walk(chunks) == whole, chunks


@pytest.mark.parametrize(
    "chunks",
    [
        [jpeg(b"\x12\xff", b""), b"\x00\x34" + END],  # FF 00 split across chunks
        [jpeg(b"\x12\xff", b""), b"\xd5\x34" + END],  # a restart marker split across chunks
        [jpeg(b"\x12", b""), b"\x34\xff", b"\xd9"],  # the end marker split across chunks
        [jpeg(b"\x12\x34", b""), END],  # the scan ends exactly at a chunk boundary
        [jpeg(b"\x12\xff", b""), b"", b"\x00" + END],  # an empty chunk keeps the waiting FF
        [jpeg(b"\x12\x34", b"\xff"), b"\xff", b"\xff\xd9"],  # FF FF fill across chunks
    ],
)
def test_an_ff_at_a_chunk_end_waits_for_the_next_chunk(chunks: list[bytes]) -> None:
    assert walk(chunks) is None


def test_the_error_names_the_byte_where_the_scan_was_broken() -> None:
    body = jpeg(b"\x12\xff\x00\x34", b"\xff\xd8")
    at = len(body) - 2
    assert walk([body]) == walk([body[: at + 1], body[at + 1 :]])
    assert f"at byte {at}" in (walk([body]) or "")
