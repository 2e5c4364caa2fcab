"""Content-Encoding, undone here rather than inside aiohttp, so every check sees the right bytes.

aiohttp inflates a gzip body on the fly while ``Content-Length`` counts the bytes on the wire,
so a valid JPEG sent gzip-encoded looked too long on every retry. Here the wire bytes are
counted against Content-Length, the decoded bytes are what is checked and stored, and a
compressed stream must end exactly where the body ends (a cut stream is a cut body). Decoded
pieces are bounded, so a small compressed body cannot inflate into one huge chunk.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from crawler.errors import ContentError

PIECE = 1024 * 1024  # the most one decoded piece holds
# What we tell servers: images and grids gain nothing from compression (and a grid NRRD is
# gzip already), so the client's session asks for identity; JSON pages shrink several times.
ACCEPT_DOWNLOAD = {"Accept-Encoding": "identity"}
ACCEPT_PAGE = {"Accept-Encoding": "gzip, deflate"}


class Decoder:
    """Decodes one body as its chunks arrive; counts the bytes as they came over the wire."""

    def __init__(self, encoding: str | None, *, url: str) -> None:
        self.url = url
        self.wire = 0
        name = (encoding or "identity").strip().lower()
        self.encoded = name not in ("", "identity")
        if name in ("gzip", "x-gzip"):
            self._inflate: zlib._Decompress | None = zlib.decompressobj(wbits=31)
        elif name == "deflate":
            self._inflate = zlib.decompressobj(wbits=15)
        elif not self.encoded:
            self._inflate = None
        else:
            raise ContentError(f"unsupported Content-Encoding {name!r}", url=url)

    def decode(self, raw: bytes) -> Iterator[bytes]:
        """The decoded pieces of the next wire chunk (at most ``PIECE`` bytes each)."""
        self.wire += len(raw)
        if self._inflate is None:
            if raw:
                yield raw
            return
        data = raw
        try:
            while True:
                piece = self._inflate.decompress(data, PIECE)
                if piece:
                    yield piece
                data = self._inflate.unconsumed_tail
                if not data and len(piece) < PIECE:  # input used up, no output held back
                    break
        except zlib.error as exc:
            raise ContentError("compressed body does not inflate", url=self.url) from exc
        if self._inflate.eof and self._inflate.unused_data:
            raise ContentError("bytes after the end of the compressed body", url=self.url)

    def finish(self) -> None:
        """The body ended: a compressed stream must have reached its own end."""
        if self._inflate is not None and not self._inflate.eof:
            raise ContentError("compressed body is cut short", url=self.url)
