"""The one HTTP client of a run: a shared session, a request cap, a rate cap and the retry policy.

Every request, RMA or download, first attempt or retry, passes the same concurrency slot and
rate token, so politeness holds under faults too. aiohttp errors are translated here, once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import aiohttp
import anyio
import structlog
from aiolimiter import AsyncLimiter
from yarl import URL

from crawler import __version__, rma, validate
from crawler.commit import Committer, make_committer
from crawler.config import Settings
from crawler.errors import (
    HTTPStatusError,
    QueryError,
    RemoteError,
    StorageError,
    TransportError,
)
from crawler.retry import classify, parse_retry_after
from crawler.store import PartWriter, StoredFile

log = structlog.get_logger("crawler.client")

T = TypeVar("T")

CHUNK = 64 * 1024
READ_WHOLE = 1024 * 1024  # bodies announced at most this long are read in one call
USER_AGENT = f"allen-mirror/{__version__} (+https://github.com/allen-mirror/allen-mirror)"

BodyCheck = Callable[[PartWriter, str], None]


def check_jpeg_body(writer: PartWriter, url: str) -> None:
    """The default body check of image downloads."""
    validate.check_jpeg(writer.head, writer.tail, writer.size, url=url)


# Not frozen: built per item, and a frozen dataclass's __init__ (object.__setattr__ per field)
# costs about four times a plain one's.
@dataclass(slots=True)
class Fetched:
    """A stored download and what it took."""

    stored: StoredFile
    http_status: int
    attempts: int


class _GaveUp(Exception):
    """The retry policy gave up on a request: the last error and the attempts made."""

    def __init__(self, error: RemoteError, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


def first_backoff(settings: Settings) -> float:
    """The wait before the first retry: the initial backoff plus jitter, capped."""
    jitter = random.uniform(0, settings.retry_wait_initial)
    return min(settings.retry_wait_max, settings.retry_wait_initial + jitter)


class DownloadFailed(Exception):
    """A download gave up after its retries; carries what the manifest records."""

    def __init__(self, error: RemoteError, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts
        self.http_status = error.status if isinstance(error, HTTPStatusError) else None


class RateLimiter(Protocol):
    """Hands out one request token at a time: aiolimiter's local bucket, or a shared one."""

    async def acquire(self) -> None: ...


def make_rate_limiter(rate: float) -> AsyncLimiter | None:
    """A token bucket of about 0.1 s of burst, so short windows respect the rate too."""
    if rate <= 0:
        return None
    burst = max(1.0, rate / 10)
    return AsyncLimiter(max_rate=burst, time_period=burst / rate)


def _translate(exc: BaseException, url: str) -> RemoteError:
    """aiohttp's and asyncio's failures become our TransportError, naming what happened."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return TransportError("timed out (no data within the read timeout)", url=url)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError("response body cut short", url=url)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return TransportError("too many redirects", url=url)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError("server closed the connection", url=url)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"cannot connect to {exc.host}:{exc.port}", url=url)
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"connection failed ({exc.__class__.__name__})", url=url)
    return TransportError(f"connection failed ({exc})", url=url)


class _Turn:
    """A concurrency slot, then a rate token: held for the whole request and body.

    A class rather than an ``asynccontextmanager``: a generator per request cost a twentieth of
    the event loop on the download path. It holds no state of its own, so one serves every
    request of a client.
    """

    __slots__ = ("_client",)

    def __init__(self, client: ApiClient) -> None:
        self._client = client

    async def __aenter__(self) -> None:
        client = self._client
        await client.slots.acquire()
        try:
            if client.rate is not None:
                await client.rate.acquire()
        except BaseException:
            client.slots.release()
            raise
        client.requests += 1

    async def __aexit__(self, *_exc: object) -> None:
        self._client.slots.release()


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
        self.slots = anyio.Semaphore(settings.concurrency, fast_acquire=True)
        # A shared limiter (several workers on one Postgres manifest) replaces the local one.
        self.rate: RateLimiter | None = limiter or make_rate_limiter(settings.rate)
        self.committer: Committer = make_committer(settings.out, group_sync=settings.group_sync)
        self._turn = _Turn(self)
        self.requests = 0
        self.retries = 0

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, limiter: RateLimiter | None = None
    ) -> AsyncIterator[ApiClient]:
        """One session per run: keep-alive connections, capped at the concurrency."""
        connector = aiohttp.TCPConnector(
            limit=settings.concurrency, limit_per_host=settings.concurrency, ttl_dns_cache=300
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.timeout,
            sock_connect=settings.timeout,
            sock_read=settings.timeout,
        )
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            raise_for_status=False,
        ) as session:
            client = cls(settings, session, limiter)
            try:
                yield client
            finally:
                client.committer.close()

    async def _attempts(self, once: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """Run ``once`` under the retry policy; returns its result and the attempts it took.

        The first attempt runs bare: most requests succeed at once, and entering stamina's
        machinery for each of them costs a tenth of the event loop's time. Only a failure the
        policy calls retryable enters the retry loop. Gives up by raising _GaveUp.
        """
        try:
            return await once(), 1
        except RemoteError as exc:
            failure = exc
        return await self._retry(failure, once)

    async def _retry(self, failure: RemoteError, once: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """After a first attempt failed with ``failure``: retry ``once`` if the policy says so."""
        s = self.settings
        decision = classify(failure, retry_after_max=s.retry_after_max)
        if decision is False or s.retries == 0:
            raise _GaveUp(failure, 1) from failure
        first_wait = decision if not isinstance(decision, bool) else first_backoff(s)
        await anyio.sleep(first_wait)
        import stamina  # only runs that meet a retryable failure load the retry machinery

        attempts = 1
        try:
            async for attempt in stamina.retry_context(
                on=lambda exc: classify(exc, retry_after_max=s.retry_after_max),
                attempts=s.retries,
                timeout=s.retry_deadline or None,
                wait_initial=s.retry_wait_initial * 2,  # the first backoff already happened
                wait_max=s.retry_wait_max,
                wait_jitter=s.retry_wait_initial,
            ):
                with attempt:
                    attempts += 1
                    self.retries += 1
                    return await once(), attempts
        except RemoteError as exc:
            raise _GaveUp(exc, attempts) from exc
        raise AssertionError("unreachable: stamina raises when it gives up")

    async def get_page(self, url: str) -> rma.Page:
        """One RMA page, retried until it parses or the policy gives up (then it raises)."""
        try:
            page, _ = await self._attempts(lambda: self._get_page_once(url))
        except _GaveUp as gave_up:
            raise gave_up.error from gave_up.error.__cause__
        return page

    async def _get_page_once(self, url: str) -> rma.Page:
        try:
            async with self._turn, self.session.get(url) as response:
                body = await response.read()
                if response.status != 200:
                    if (failure := rma.query_failure(body)) is not None:
                        raise QueryError(f"query failed: {failure}", url=url)
                    raise HTTPStatusError(
                        response.status,
                        url=url,
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    )
                content_type = response.headers.get("Content-Type", "")
        except RemoteError:
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, url) from exc
        return rma.parse_page(body, content_type, url=url)

    async def download(
        self,
        url: str,
        dest: str | Path,
        check: BodyCheck = check_jpeg_body,
        *,
        image: bool = True,
    ) -> Fetched:
        """Fetch ``url`` into ``dest`` atomically; raises DownloadFailed once retries run out.

        StorageError is not retried: a full or read-only disk is the run's problem, not the item's.
        """
        try:
            # The first attempt inline: one coroutine less to resume at each step of a download.
            stored, status = await self._download_once(url, dest, check, image=image)
            attempts = 1
        except RemoteError as failure:
            try:
                (stored, status), attempts = await self._retry(
                    failure, lambda: self._download_once(url, dest, check, image=image)
                )
            except _GaveUp as gave_up:
                raise DownloadFailed(gave_up.error, gave_up.attempts) from gave_up.error
        return Fetched(stored=stored, http_status=status, attempts=attempts)

    async def _download_once(
        self, url: str, dest: str | Path, check: BodyCheck, *, image: bool
    ) -> tuple[StoredFile, int]:
        writer = PartWriter(dest, fsync=self.settings.fsync)
        try:
            try:
                # The URL is already encoded (planned with urlencode): yarl need not redo it.
                async with self._turn, self.session.get(URL(url, encoded=True)) as response:
                    if response.status != 200:
                        raise HTTPStatusError(
                            response.status,
                            url=url,
                            retry_after=parse_retry_after(response.headers.get("Retry-After")),
                        )
                    if image:
                        validate.check_image_headers(response.headers.get("Content-Type"), url=url)
                    length = response.content_length
                    if length is not None and length <= READ_WHOLE:
                        # A body announced small (tiles, downsampled images) in one read: the
                        # same bytes and the same idle-read timeout, without an async iterator
                        # step per chunk.
                        writer.add(await response.read())
                    else:
                        async for chunk in response.content.iter_chunked(CHUNK):
                            if writer.add(chunk):
                                await writer.spill()
                    validate.check_length(writer.size, length, url=url)
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _translate(exc, url) from exc
            check(writer, url)
            return await self.committer.commit(writer), status
        except BaseException:
            await writer.discard()
            raise


__all__ = ["ApiClient", "DownloadFailed", "Fetched", "StorageError", "check_jpeg_body"]
