"""Decide whether a request fails and how, as pure functions of the config and the request.

Draws hash (seed, URL, attempt number) instead of sharing one RNG, so a given URL's n-th attempt
fails the same way however concurrent requests interleave; a retry draws afresh.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from crawler.simulator.config import MISSING, SimulatorConfig
from crawler.simulator.routes import Reply

_HTTP = frozenset({"http_500", "http_502", "http_503_retry_after", "http_429_retry_after"})
_TRANSPORT = frozenset({"reset", "truncated", "stall", "html_outage", "empty_body"})
_ENCODED = frozenset({"gzip_encoded"})
APPLICABLE: dict[str, frozenset[str]] = {
    "rma": _HTTP | _TRANSPORT | _ENCODED | {"malformed_json"},
    "image": _HTTP | _TRANSPORT | _ENCODED | {"redirect", "corrupt_jpeg"},
    "redirect": _HTTP | _TRANSPORT | _ENCODED | {"corrupt_jpeg"},
    "grid": _HTTP | _TRANSPORT | _ENCODED | {"corrupt_grid"},
    "other": frozenset(),
}
ENDLESS_CHUNK = 64 * 1024
PERMANENT_PREFIX = "permanent_"

OUTAGE_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Site unavailable</title></head>"
    b"<body><h1>The Allen Brain Atlas is temporarily unavailable</h1>"
    b"<p>We are performing scheduled maintenance. Please try again later.</p></body></html>\n"
)
HTML = "text/html; charset=utf-8"
_REASONS = {
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class ResponsePlan:
    """Exactly what goes on the wire, decided before any byte is written."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()  # includes Content-Type and Content-Length
    body: bytes = b""  # written first
    then: Literal["finish", "close", "stall", "endless", "trickle"] = "finish"
    rest: bytes = b""  # written after a stall (or trickled), if the client is still there
    reset: bool = False  # close the connection before sending anything


def draw(seed: int, url: str, attempt: int, purpose: str) -> float:
    """A uniform number in [0, 1) fixed by its inputs."""
    digest = hashlib.blake2b(f"{seed}\0{url}\0{attempt}\0{purpose}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def choose_fault(
    config: SimulatorConfig, route: str, url: str, attempt: int, reply: Reply
) -> str | None:
    """The fault to inject, if any: permanent per-image failures first, then the random menu."""
    if reply.status != 200:
        return None  # an error is never dressed up further
    for fragment, kind in config.url_faults.items():
        if fragment in url:
            return PERMANENT_PREFIX + kind
    if route in ("image", "redirect") and reply.image_id is not None:
        permanent = config.permanent_failures.get(reply.image_id)
        if permanent is not None:
            return PERMANENT_PREFIX + permanent
    if config.fault_rate <= 0 or draw(config.seed, url, attempt, "rate") >= config.fault_rate:
        return None
    menu = APPLICABLE.get(route, frozenset()) & config.fault_kinds
    if reply.image_path is None:
        menu -= {"redirect"}
    if not menu:
        return None
    ordered = sorted(menu)
    return ordered[int(draw(config.seed, url, attempt, "kind") * len(ordered))]


def _headers(
    content_type: str, length: int, extra: tuple[tuple[str, str], ...] = ()
) -> tuple[tuple[str, str], ...]:
    return (("Content-Type", content_type), ("Content-Length", str(length)), *extra)


def _error(status: int, extra: tuple[tuple[str, str], ...] = ()) -> ResponsePlan:
    reason = _REASONS[status]
    page = f"<html><head><title>{status} {reason}</title></head><body><h1>{reason}</h1>"
    body = (page + "</body></html>\n").encode()
    return ResponsePlan(status, _headers(HTML, len(body), extra), body)


def corrupt_jpeg(body: bytes) -> bytes:
    """A JPEG cut in half: it starts FF D8 but never reaches its FF D9 end marker."""
    cut = body[: max(2, len(body) // 2)]
    while cut.endswith(b"\xff\xd9"):
        cut = cut[:-1]
    return cut


def corrupt_grid(body: bytes) -> bytes:
    """A grid file damaged in place: same length, its first bytes (the magic) zeroed."""
    return bytes(min(8, len(body))) + body[8:]


def bad_structure(body: bytes) -> bytes:
    """As long as ``body``, FF D8 ... FF D9, and noise between: a JPEG only at its edges."""
    noise = bytearray()
    counter = 0
    while len(noise) < max(0, len(body) - 4):
        noise += hashlib.blake2b(counter.to_bytes(8, "big"), digest_size=64).digest()
        counter += 1
    return b"\xff\xd8" + bytes(noise[: max(0, len(body) - 4)]) + b"\xff\xd9"


def endless_chunk() -> bytes:
    """What an endless body repeats: incompressible, never containing the JPEG end marker."""
    return bad_structure(bytes(ENDLESS_CHUNK + 4))[2:-2].replace(b"\xff", b"\x00")


def patch_records(reply: Reply, patches: dict[int, dict[str, object]]) -> Reply:
    """Malformed API records: rows of an RMA envelope whose id is patched get odd fields."""
    if not patches or reply.status != 200:
        return reply
    envelope = json.loads(reply.body)
    rows = envelope.get("msg")
    if not isinstance(rows, list):
        return reply
    for row in rows:
        row_id = row.get("id") if isinstance(row, dict) else None
        patch = patches.get(row_id) if isinstance(row_id, int) else None
        if patch is None:
            continue
        for name, value in patch.items():
            if value == MISSING:
                row.pop(name, None)
            else:
                row[name] = value
    return dataclasses.replace(reply, body=json.dumps(envelope).encode())


def plan_response(
    reply: Reply, fault: str | None, config: SimulatorConfig, location: str | None
) -> ResponsePlan:
    """Translate a reply and an optional fault into bytes and actions."""
    full = _headers(reply.content_type, len(reply.body), reply.headers)
    half = len(reply.body) // 2
    retry = (("Retry-After", str(config.retry_after_seconds)),)
    match fault:
        case None:
            return ResponsePlan(reply.status, full, reply.body)
        case "http_500" | "permanent_http_500":
            return _error(500)
        case "http_502":
            return _error(502)
        case "http_503_retry_after":
            return _error(503, retry)
        case "http_429_retry_after":
            return _error(429, retry)
        case "permanent_http_404":
            return _error(404)
        case "reset":
            return ResponsePlan(reset=True)
        case "truncated":
            return ResponsePlan(200, full, reply.body[:half], then="close")
        case "stall":
            return ResponsePlan(200, full, reply.body[:half], "stall", reply.body[half:])
        case "html_outage":
            return ResponsePlan(200, _headers(HTML, len(OUTAGE_PAGE)), OUTAGE_PAGE)
        case "malformed_json":
            cut = reply.body[:half]
            return ResponsePlan(200, _headers(reply.content_type, len(cut)), cut)
        case "empty_body":
            return ResponsePlan(200, _headers(reply.content_type, 0))
        case "redirect":
            assert location is not None
            return ResponsePlan(302, (*_headers(HTML, 0), ("Location", location)))
        case "corrupt_grid":
            damaged = corrupt_grid(reply.body)
            return ResponsePlan(200, _headers(reply.content_type, len(damaged)), damaged)
        case "corrupt_jpeg" | "permanent_corrupt_jpeg":
            cut = corrupt_jpeg(reply.body)
            return ResponsePlan(200, _headers(reply.content_type, len(cut)), cut)
        case "gzip_encoded" | "permanent_gzip_encoded":
            packed = gzip.compress(reply.body, mtime=0)
            encoded = (*reply.headers, ("Content-Encoding", "gzip"))
            return ResponsePlan(200, _headers(reply.content_type, len(packed), encoded), packed)
        case "permanent_bad_structure":
            noise = bad_structure(reply.body)
            return ResponsePlan(200, _headers(reply.content_type, len(noise)), noise)
        case "permanent_endless":  # no Content-Length: chunked, for ever
            start = reply.body[: len(reply.body) // 2]
            return ResponsePlan(200, (("Content-Type", reply.content_type),), start, "endless")
        case "permanent_trickle":
            return ResponsePlan(200, full, b"", "trickle", reply.body)
    raise ValueError(f"unknown fault {fault!r}")
