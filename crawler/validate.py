"""Content checks: is this body really what the service promises? Pure, table-tested."""

from __future__ import annotations

import struct
import zlib

from crawler.errors import ContentError

JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"


def media_type(content_type: str | None) -> str:
    """``image/jpeg; charset=x`` becomes ``image/jpeg``."""
    return (content_type or "").split(";")[0].strip().lower()


def check_image_headers(content_type: str | None, *, url: str) -> None:
    """Refuse a non-image answer before reading it (the outage page comes with HTTP 200)."""
    media = media_type(content_type)
    if not media.startswith("image/"):
        what = "an HTML page (service unavailable?)" if "html" in media else repr(media or "none")
        raise ContentError(f"expected an image, got {what}", url=url)


def check_jpeg(head: bytes, tail: bytes, size: int, *, url: str) -> None:
    """A complete JPEG starts FF D8 and ends FF D9; anything else is cut or corrupt."""
    if size < 4 or not head.startswith(JPEG_START):
        raise ContentError("body is not a JPEG (no FF D8 start marker)", url=url)
    if not tail.endswith(JPEG_END):
        raise ContentError("JPEG is incomplete (no FF D9 end marker)", url=url)


def check_length(received: int, declared: int | None, *, url: str) -> None:
    """The body must be as long as Content-Length said."""
    if declared is not None and received != declared:
        raise ContentError(f"body has {received} bytes, Content-Length said {declared}", url=url)


NRRD_MAGIC = b"NRRD000"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_START = b"PK\x03\x04"
ZIP_END_RECORD = 22  # the end-of-central-directory record without an archive comment


def check_nrrd(head: bytes, *, url: str) -> None:
    """A grid volume is a NRRD: plain ``NRRD000x`` header (its data gzip-encoded, as the service
    sends it), or the whole file gzipped, in which case what the head inflates to must begin a
    ``NRRD000x`` header. Only the first bytes are kept, so this is a format check, not a full
    decode; a cut body is caught by its length."""
    if head.startswith(NRRD_MAGIC):
        return
    if head.startswith(GZIP_MAGIC):
        try:
            start = zlib.decompressobj(wbits=31).decompress(head)
        except zlib.error as exc:
            raise ContentError("gzip body does not inflate (corrupt grid file)", url=url) from exc
        if NRRD_MAGIC.startswith(start[: len(NRRD_MAGIC)]) or start.startswith(NRRD_MAGIC):
            return
        raise ContentError("gzip body is not a NRRD (no NRRD000 magic inside)", url=url)
    what = "an HTML page (service unavailable?)" if b"<" in head[:2] else "not a NRRD"
    raise ContentError(f"grid body is {what} (no NRRD000 or gzip magic)", url=url)


def check_zip(head: bytes, tail: bytes, size: int, *, url: str) -> None:
    """A complete zip starts ``PK 03 04`` and ends with its end-of-central-directory record,
    whose last 16 bytes say where the directory is: offset + size + 22 must be the file size.
    """
    if not head.startswith(ZIP_START):
        raise ContentError("body is not a zip (no PK 03 04 start)", url=url)
    if len(tail) < 16 or size < ZIP_END_RECORD:
        raise ContentError("zip is too short to hold its central directory", url=url)
    entries_here, entries_total, directory_size, directory_offset, comment = struct.unpack(
        "<HHIIH", tail[-14:]
    )
    if directory_offset == 0xFFFFFFFF:  # zip64: the record points elsewhere; trust the length
        return
    if (
        comment != 0
        or entries_here != entries_total
        or directory_offset + directory_size + ZIP_END_RECORD != size
    ):
        raise ContentError("zip is incomplete (its central directory does not end it)", url=url)
