"""The one HTTP client of a run: a shared session, a request cap, a rate cap and the retry policy.

Every request, RMA or download, first attempt or retry, holds one of ``--concurrency`` slots
and a ``--rate`` token for its whole life, so politeness holds under faults too. RMA pages
take the next free slot before waiting downloads (``crawler/slots.py``), so seeding stays
ahead of fetching. aiohttp's exceptions are translated here, once (``translate_errors``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Protocol, TypeVar

import aiohttp
import structlog
from aiolimiter import AsyncLimiter
from yarl import URL

from crawler import __version__, rma, validate
from crawler.config import Settings
from crawler.encoding import ACCEPT_DOWNLOAD, ACCEPT_PAGE, Decoder
from crawler.errors import (
    HTTPStatusError,
    QueryError,
    RemoteError,
    TooLargeError,
    TransportError,
)
from crawler.redact import mask_url
from crawler.retry import GaveUp, RetryPolicy, parse_retry_after, reason_of, retrying
from crawler.slots import PrioritySlots
from crawler.store import Part

log = structlog.get_logger("crawler.client")

T = TypeVar("T")

CHUNK = 1024 * 1024  # one read per downsampled image: an async step per 64 kB cost CPU
# The largest RMA page read: 25,000 rows (the server's maximum) of the widest records are a few
# MiB; an endless or absurd answer is cut here instead of filling memory.
MAX_PAGE_BYTES = 64 * 1024 * 1024
USER_AGENT = f"allen-mirror/{__version__} (+https://github.com/allen-mirror/allen-mirror)"


class RateLimiter(Protocol):
    """Hands out one request token at a time: aiolimiter's local bucket, or a shared one."""

    async def acquire(self) -> None: ...


def make_rate_limiter(rate: float) -> AsyncLimiter | None:
    """A token bucket of about 0.1 s of burst, so short windows respect the rate too."""
    if rate <= 0:
        return None
    burst = max(1.0, rate / 10)
    return AsyncLimiter(max_rate=burst, time_period=burst / rate)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        retries=settings.retries,
        wait_initial=settings.retry_wait_initial,
        wait_max=settings.retry_wait_max,
        retry_after_max=settings.retry_after_max,
        deadline=settings.retry_deadline,
    )


def _describe(exc: BaseException, total: float) -> tuple[str, str]:
    """aiohttp's and asyncio's failures in a few words, and a one-word reason for metrics."""
    if isinstance(exc, aiohttp.ServerTimeoutError):  # connect or idle-read timeout
        return "timed out (no data within the read timeout)", "timeout"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # the session's total timeout
        return f"not complete after {total:g} s (max-item-seconds)", "total_timeout"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body cut short", "body_cut"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects", "redirects"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection", "disconnected"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host}", "dns"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}", "connect"
    return f"connection failed ({exc.__class__.__name__})", "connection"


def over_limit(size: int, limit: int, url: str, what: str = "body") -> TooLargeError:
    return TooLargeError(f"{what} larger than {limit} bytes ({size}+ received)", url=url)


@contextmanager
def translate_errors(url: str, total: float) -> Iterator[None]:
    """aiohttp's and asyncio's failures become our TransportError, naming what happened."""
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        unresolved = isinstance(exc, aiohttp.ClientConnectorDNSError)
        message, reason = _describe(exc, total)
        raise TransportError(message, url=url, unresolved=unresolved, reason=reason) from exc


def _status_error(response: aiohttp.ClientResponse, url: str) -> HTTPStatusError:
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return HTTPStatusError(response.status, url=url, retry_after=retry_after)


FIRST_CONTACT_SECONDS = 10.0


def first_contact(policy: RetryPolicy) -> RetryPolicy:
    """Until the server has answered once, a refused or unresolvable host is a mistake (a typo
    in --api-base, no network) more often than an outage: give up within seconds, not minutes."""
    limit = min(policy.deadline or FIRST_CONTACT_SECONDS, FIRST_CONTACT_SECONDS)
    return dataclasses.replace(policy, deadline=limit, retry_unresolved=False)


class ApiClient:
    """Requests with slots, rate tokens, timeouts and retries; counts what it did."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.slots = PrioritySlots(settings.concurrency)
        # A shared limiter (several workers on one Postgres manifest) replaces the local one.
        self.rate: RateLimiter | None = limiter or make_rate_limiter(settings.rate)
        self.policy = retry_policy(settings)
        self.requests = 0
        self.retries = 0
        self.retry_reasons: collections.Counter[str] = collections.Counter()  # reason_of() words
        # When each request in flight took its slot (the progress bar names stalls with it).
        self.in_flight: dict[int, float] = {}
        self.observe: Callable[[float], None] | None = None  # a latency histogram, when metrics
        self.reached = False

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, limiter: RateLimiter | None = None
    ) -> AsyncIterator[ApiClient]:
        """One session per run: keep-alive connections, capped at the concurrency. A stalled body
        is cut by the idle-read timeout; one that trickles a few bytes at a time by the total
        timeout, ``max_item_seconds`` (generous: it must not cut a long, moving download)."""
        connector = aiohttp.TCPConnector(
            limit=settings.concurrency, limit_per_host=settings.concurrency, ttl_dns_cache=300
        )
        timeout = aiohttp.ClientTimeout(
            total=settings.max_item_seconds,
            connect=settings.timeout,
            sock_connect=settings.timeout,
            sock_read=settings.timeout,
        )
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, **ACCEPT_DOWNLOAD},  # pages ask for gzip
            raise_for_status=False,
            auto_decompress=False,  # crawler/encoding.py decodes, so lengths can be checked
        ) as session:
            yield cls(settings, session, limiter)

    @asynccontextmanager
    async def _turn(self, *, urgent: bool = False) -> AsyncIterator[None]:
        """A concurrency slot (``urgent``: before waiting downloads), then a rate token: held
        for the whole request and its body."""
        await self.slots.acquire(urgent=urgent)
        try:
            if self.rate is not None:
                await self.rate.acquire()
            self.requests += 1
            number, started = self.requests, time.monotonic()
            self.in_flight[number] = started
            try:
                yield
            finally:
                del self.in_flight[number]
                if self.observe is not None:
                    self.observe(time.monotonic() - started)
        finally:
            self.slots.release()

    async def retrying(self, once: Callable[[], Awaitable[T]], url: str) -> tuple[T, int]:
        """``once`` under the run's retry policy; (result, attempts), or GaveUp."""

        shown = mask_url(url)

        def on_retry(error: RemoteError, attempt: int, wait: float) -> None:
            self.retries += 1
            self.retry_reasons[reason_of(error)] += 1
            log.info("request.retry", url=shown, reason=str(error), attempt=attempt, wait_s=wait)

        policy = self.policy
        if not self.reached:  # fail fast where waiting cannot help: see first_contact()
            policy = first_contact(policy)
        return await retrying(policy, once, on_retry)

    async def get_page(self, url: str, known: str | None = None) -> rma.Page:
        """One RMA page, retried until it parses or the policy gives up (then it raises).

        A 200 whose body has the sha256 ``known`` (a page an earlier run decoded and accepted)
        is not decoded again: the page comes back with ``same`` set and no rows.
        """
        try:
            page, _ = await self.retrying(lambda: self._get_page_once(url, known), url)
        except GaveUp as gave_up:
            raise gave_up.error from gave_up
        return page

    async def _get_page_once(self, url: str, known: str | None) -> rma.Page:
        shown = mask_url(url)
        with translate_errors(shown, self.settings.max_item_seconds):
            async with (
                self._turn(urgent=True),
                self.session.get(url, headers=ACCEPT_PAGE) as response,
            ):
                self.reached = True  # the server answered: later failures are worth waiting for
                body = await _read_page(response, shown)
                if response.status != 200:
                    if (failure := rma.query_failure(body)) is not None:
                        raise QueryError(f"query failed: {failure}", url=shown)
                    raise _status_error(response, shown)
                content_type = response.headers.get("Content-Type", "")
        digest = hashlib.sha256(body).hexdigest()
        if digest == known:
            return rma.Page(rows=[], start_row=0, total_rows=None, digest=digest, same=True)
        return dataclasses.replace(rma.parse_page(body, content_type, url=shown), digest=digest)

    async def stream_into(
        self,
        url: str,
        part: Part,
        *,
        image: bool,
        limit: int,
        inspect: Callable[[bytes], None] | None = None,
    ) -> int:
        """One attempt: the body of ``url`` into ``part``; returns the HTTP status.

        Only a 200 with (for images) an image Content-Type is read; the bytes on the wire must
        be as many as Content-Length said, the decoded body (what ``inspect`` sees and the part
        stores) at most ``limit`` bytes, and the whole request must end within
        ``max_item_seconds``. The URL is already encoded (planned with urlencode).
        """
        shown = mask_url(url)
        with translate_errors(shown, self.settings.max_item_seconds):
            async with (
                self._turn(),
                self.session.get(URL(url, encoded=True)) as response,
            ):
                self.reached = True
                if response.status != 200:
                    raise _status_error(response, shown)
                if image:
                    validate.check_image_headers(response.headers.get("Content-Type"), url=shown)
                body = Decoder(response.headers.get("Content-Encoding"), url=shown)
                declared = response.content_length
                if declared is not None and declared > limit and not body.encoded:
                    raise over_limit(declared, limit, shown)
                async for raw in response.content.iter_chunked(CHUNK):
                    for chunk in body.decode(raw):
                        if part.size + len(chunk) > limit:
                            raise over_limit(part.size + len(chunk), limit, shown)
                        if inspect is not None:
                            inspect(chunk)
                        await part.write(chunk)
                validate.check_length(body.wire, declared, url=shown)
                body.finish()
                return response.status


async def _read_page(response: aiohttp.ClientResponse, url: str) -> bytes:
    """A whole RMA answer, decoded, refused once it passes ``MAX_PAGE_BYTES``."""
    body = Decoder(response.headers.get("Content-Encoding"), url=url)
    declared = response.content_length
    if declared is not None and declared > MAX_PAGE_BYTES and not body.encoded:
        raise over_limit(declared, MAX_PAGE_BYTES, url, "RMA page")
    pieces: list[bytes] = []
    size = 0
    async for raw in response.content.iter_chunked(CHUNK):
        for piece in body.decode(raw):
            size += len(piece)
            if size > MAX_PAGE_BYTES:
                raise over_limit(size, MAX_PAGE_BYTES, url, "RMA page")
            pieces.append(piece)
    validate.check_length(body.wire, declared, url=url)
    body.finish()
    return b"".join(pieces)


__all__ = ["ApiClient", "GaveUp", "RateLimiter", "make_rate_limiter"]
