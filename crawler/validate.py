"""Content checks: is this body really what the service promises? Pure, table-tested."""

from __future__ import annotations

import re
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


# Markers that stand alone (no length): TEM, RST0-7, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})
# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
SOS, EOI = 0xDA, 0xD9


# Inside entropy-coded data an FF is followed by 00 (stuffing) or a restart marker D0-D7; any
# other byte after an FF is where the scan ends. One regex search finds it in C, as a served
# image holds hundreds of stuffed FFs (too many to step through in Python), and ``feed`` itself
# checks for an FF that ends the chunk, so the pattern has no ``|\Z`` branch to try at each FF.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


class JpegWalker:
    """Walks a JPEG's marker structure as its chunks arrive, so a body that merely starts FF D8
    and ends FF D9 is refused.

    Every segment before the scan must have a valid length; a frame header (SOFn) and a scan
    (SOS) must come before the end marker; inside entropy-coded data only stuffed ``FF 00`` and
    restart markers may follow an FF; the end marker must end the body. The entropy-coded data
    is searched with one regex per scan (C speed), so the walk costs little beside the download.
    Holds at most a few bytes between chunks.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._carry = b""  # the start of a marker split across chunks
        self._offset = 0  # where ``_carry`` starts in the body
        self._skip = 0  # bytes of a segment's payload still to pass over
        self._scan_after_skip = False
        self._in_scan = False
        self._started = self._frame = self._scan = self._ended = False

    def _fail(self, problem: str, at: int) -> ContentError:
        return ContentError(f"JPEG structure is broken: {problem} at byte {at}", url=self.url)

    def feed(self, chunk: bytes) -> None:
        """Walk the next chunk of the body."""
        data = self._carry + chunk if self._carry else chunk
        base = self._offset
        i, end = 0, len(data)
        while i < end:
            if self._ended:
                raise self._fail("data after the end marker", base + i)
            if self._skip:
                step = min(self._skip, end - i)
                i += step
                self._skip -= step
                if not self._skip and self._scan_after_skip:
                    self._in_scan, self._scan_after_skip = True, False
                continue
            if not self._started:
                if end - i < 2:
                    break
                if data[i] != 0xFF or data[i + 1] != 0xD8:
                    raise ContentError("body is not a JPEG (no FF D8 start marker)", url=self.url)
                self._started = True
                i += 2
                continue
            if self._in_scan:
                found = _SCAN_END.search(data, i)
                if found is not None:
                    i = found.start()
                    self._in_scan = False
                    continue
                i = end - 1 if data[-1] == 0xFF else end  # an FF's next byte is in the next chunk
                break
            consumed = self._marker(data, i, base)
            if consumed == 0:
                break
            i += consumed
        self._carry = bytes(data[i:])
        self._offset = base + i

    def _marker(self, data: bytes, i: int, base: int) -> int:
        """Read the marker (and segment length) at ``i``; bytes consumed, 0 when cut short."""
        if data[i] != 0xFF:
            raise self._fail(f"expected a marker, found {data[i]:02X}", base + i)
        if i + 1 >= len(data):
            return 0
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            return 1
        if marker == EOI:
            if not (self._frame and self._scan):
                raise self._fail("end marker before any image data", base + i)
            self._ended = True
            return 2
        if marker in _STANDALONE:
            if marker == 0xD8:
                raise self._fail("a second start marker", base + i)
            return 2
        if marker == 0x00:
            raise self._fail("stuffed byte outside the image data", base + i)
        if i + 3 >= len(data):
            return 0
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            raise self._fail(f"segment FF {marker:02X} with length {length}", base + i)
        self._frame = self._frame or marker in _FRAMES
        if marker == SOS:
            if not self._frame:
                raise self._fail("image data before a frame header", base + i)
            self._scan = True
        payload = length - 2
        if i + 4 + payload <= len(data):  # the whole segment is here: past it in one step
            self._in_scan = marker == SOS
            return 4 + payload
        self._skip = payload  # the rest comes in later chunks
        self._scan_after_skip = marker == SOS
        return 4

    def finish(self) -> None:
        """The body ended: it must have ended with the end marker."""
        if not self._ended:
            raise ContentError("JPEG is incomplete (no FF D9 end marker)", url=self.url)
