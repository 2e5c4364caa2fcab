"""Content checks: is this body really what the service promises? Pure, table-tested."""

from __future__ import annotations

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
