"""The object store: a mirror in an S3-compatible bucket, under a key prefix, with the disk's
guarantees.

An object appears only complete. A body up to ``part_size`` stays in memory and goes up in one
PUT; a larger one becomes a multipart upload whose parts go up while the body arrives (memory
stays at one part), completed at commit and aborted on any failure, so no half object is ever
visible and no upload is left behind (``sweep`` aborts those killed processes left). The body's
sha256 is computed while it streams and stored in the object's metadata (``sha256``); for a
multipart object, whose metadata is fixed when the upload starts, a server-side copy onto itself
adds it. Keys are the mirror's relative paths under the prefix, as on disk.

aiobotocore is the client: it runs on the aiohttp the crawler already uses, reads the standard
AWS environment variables and config files (``AWS_ENDPOINT_URL`` for MinIO, Ceph, R2), and is
the async face of the AWS SDK itself.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import anyio

from crawler.errors import BucketError, StorageError, UsageError
from crawler.store import CommitResult, Part, StoredFile

T = TypeVar("T")

MIB = 1024 * 1024
# Bodies above one part go up as multipart uploads, a part at a time while they arrive; S3 wants
# parts of at least 5 MiB (except the last).
DEFAULT_PART_SIZE = 8 * MIB
MAX_COPY_BYTES = 5 * 1024 * MIB  # CopyObject's limit: the sha256 metadata of larger objects
DELETE_BATCH = 1000  # keys per DeleteObjects request
LIST_FROM = 20  # paths of one directory in a resume chunk from which a listing beats HEADs
HASH_OFF_LOOP = 256 * 1024  # stretches at least this long are hashed in a thread

# What the bucket or the credentials say when nothing will ever work: the run stops.
FATAL_CODES = {
    "NoSuchBucket": "no such bucket",
    "AccessDenied": "access denied",
    "AllAccessDisabled": "access denied",
    "InvalidAccessKeyId": "the access key is not known (check AWS_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": "the secret key does not match (check AWS_SECRET_ACCESS_KEY)",
    "InvalidToken": "the session token is not valid (check AWS_SESSION_TOKEN)",
    "ExpiredToken": "the session token has expired",
    "InvalidBucketName": "invalid bucket name",
    "PermanentRedirect": "the bucket is in another region (set AWS_REGION or region=...)",
}
CHECK_SECONDS = 10.0  # the bucket check before a run: a refused or silent endpoint ends here
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True, slots=True)
class BucketUrl:
    """``s3://BUCKET/PREFIX``, split."""

    bucket: str
    prefix: str  # without leading or trailing '/'; '' for the whole bucket

    @classmethod
    def parse(cls, url: str) -> BucketUrl:
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        return cls(bucket, prefix.strip("/"))

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def path(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True, slots=True)
class ObjectOptions:
    """``--storage-option KEY=VALUE``: what the AWS environment and config files do not say."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    addressing_style: str | None = None  # path | virtual | auto
    part_size: int = DEFAULT_PART_SIZE
    concurrency: int = 16  # requests of one commit batch in flight

    KEYS = ("endpoint_url", "region", "profile", "addressing_style", "part_size", "concurrency")

    @classmethod
    def parse(cls, pairs: Sequence[str]) -> ObjectOptions:
        """Each KEY=VALUE checked; a UsageError names the one that is wrong."""
        values: dict[str, Any] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in cls.KEYS:
                raise UsageError(
                    f"invalid --storage-option {pair!r}: expected KEY=VALUE with KEY one of "
                    f"{', '.join(cls.KEYS)}"
                )
            if key in ("part_size", "concurrency"):
                try:
                    number = int(value)
                except ValueError:
                    number = 0
                if number < 1:
                    raise UsageError(
                        f"invalid --storage-option {pair!r}: expected a positive number"
                    )
                values[key] = number
            else:
                values[key] = value.strip()
        if values.get("addressing_style", "auto") not in ("path", "virtual", "auto"):
            raise UsageError("invalid --storage-option addressing_style: path, virtual or auto")
        return cls(**values)


def error_code(exc: BaseException | None) -> str | None:
    """The S3 error code of a botocore ClientError; None for anything else."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    return str(response.get("Error", {}).get("Code") or "") or None


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """botocore's exceptions, once, into ours: a bucket that refuses everything or cannot be
    reached stops the run (BucketError); anything else fails one file (StorageError)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except NoCredentialsError as exc:
        raise BucketError(
            f"{where}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        ) from exc
    except ClientError as exc:
        code = error_code(exc) or "unknown"
        if code in FATAL_CODES:
            raise BucketError(f"{where}: {FATAL_CODES[code]}") from exc
        raise StorageError(f"{where}: {exc}") from exc
    except BotoCoreError as exc:  # connection refused, endpoint not resolvable, timeouts
        raise BucketError(f"{where}: cannot reach the object store: {exc}") from exc


class ObjectPart(Part):
    """A body on its way to one object: in memory up to a part, then a multipart upload."""

    def __init__(self, store: ObjectStore, path: str) -> None:
        super().__init__(path)
        self.store = store
        self.key = store.url.key(path)
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.upload_id: str | None = None
        self.uploaded: list[dict[str, Any]] = []  # {"ETag", "PartNumber"} of each part sent

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._account(chunk)
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        if self.buffered >= self.store.options.part_size:
            await self.store.send_part(self)

    def take(self) -> bytes:
        """The buffered bytes, hashed in order, and the buffer emptied."""
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        return data


class ObjectStore:
    """A mirror under ``s3://BUCKET/PREFIX``, through one aiobotocore client."""

    def __init__(self, client: Any, url: BucketUrl, options: ObjectOptions) -> None:
        self.client = client
        self.url = url
        self.options = options
        self.own_uploads: set[str] = set()  # this process's multipart uploads: never swept
        self.limit = anyio.CapacityLimiter(options.concurrency)

    def __str__(self) -> str:
        return str(self.url)

    def where(self, path: str = "") -> str:
        return f"s3://{self.url.bucket}/{self.url.key(path)}" if path else str(self.url)

    async def check(self) -> None:
        """One request that fails, in one line, when the bucket is missing or refuses us."""
        with translated(str(self.url)):
            try:
                await self.client.head_bucket(Bucket=self.url.bucket)
            except Exception as exc:
                # HEAD answers carry no error body: a bare 404 or 403 is the bucket's verdict.
                code = error_code(exc)
                if code in ("404", "NotFound"):
                    raise BucketError(f"{self.url}: no such bucket") from exc
                if code == "403":
                    # Which: list once, whose answer names the code (bad key, denied).
                    await self.client.list_objects_v2(
                        Bucket=self.url.bucket, Prefix=self.url.key(""), MaxKeys=1
                    )
                    raise BucketError(f"{self.url}: access denied") from exc
                raise

    # -- writing -------------------------------------------------------------------------------

    @asynccontextmanager
    async def part(self, path: str) -> AsyncIterator[Part]:
        part = ObjectPart(self, path)
        try:
            yield part
        except BaseException:
            await self.discard([part])
            raise

    async def send_part(self, part: ObjectPart) -> None:
        """Upload what ``part`` holds as its next multipart part (the upload starts here)."""
        data = part.take()
        await _hash(part, data)
        with translated(self.where(part.path)):
            if part.upload_id is None:
                started = await self.client.create_multipart_upload(
                    Bucket=self.url.bucket, Key=part.key
                )
                part.upload_id = str(started["UploadId"])
                self.own_uploads.add(part.upload_id)
            number = len(part.uploaded) + 1
            sent = await self.client.upload_part(
                Bucket=self.url.bucket,
                Key=part.key,
                UploadId=part.upload_id,
                PartNumber=number,
                Body=data,
            )
        part.uploaded.append({"ETag": sent["ETag"], "PartNumber": number})

    async def commit(self, parts: Sequence[Part]) -> list[CommitResult]:
        own = [_object(part) for part in parts]
        results: list[CommitResult | None] = [None] * len(own)
        fatal: list[BucketError] = []

        async def one(index: int, part: ObjectPart) -> None:
            async with self.limit:
                try:
                    results[index] = await self._commit_one(part)
                except BucketError as exc:
                    fatal.append(exc)
                    results[index] = exc
                except StorageError as exc:
                    results[index] = exc
                except BaseException:  # cancelled (a stop): no upload is left open
                    await self.discard([part])
                    raise
                if not isinstance(results[index], StoredFile):
                    await self.discard([part])

        async with anyio.create_task_group() as group:
            for index, part in enumerate(own):
                group.start_soon(one, index, part)
        if fatal:
            raise fatal[0]
        return [result for result in results if result is not None]

    async def _commit_one(self, part: ObjectPart) -> StoredFile:
        """PUT a small body; send the last part of a large one and complete its upload."""
        bucket, where = self.url.bucket, self.where(part.path)
        if part.upload_id is None:
            data = part.take()
            await _hash(part, data)
            stored = part.stored()
            with translated(where):
                await self.client.put_object(
                    Bucket=bucket,
                    Key=part.key,
                    Body=data,
                    Metadata={"sha256": stored.sha256},
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(stored.sha256)).decode(),
                )
            return stored
        if part.buffered or not part.uploaded:
            await self.send_part(part)
        stored = part.stored()
        with translated(where):
            await self.client.complete_multipart_upload(
                Bucket=bucket,
                Key=part.key,
                UploadId=part.upload_id,
                MultipartUpload={"Parts": part.uploaded},
            )
        self.own_uploads.discard(part.upload_id)
        part.upload_id = None
        if stored.size <= MAX_COPY_BYTES:
            with translated(where):
                await self.client.copy_object(
                    Bucket=bucket,
                    Key=part.key,
                    CopySource={"Bucket": bucket, "Key": part.key},
                    Metadata={"sha256": stored.sha256},
                    MetadataDirective="REPLACE",
                )
        return stored

    async def discard(self, parts: Sequence[Part]) -> None:
        """Abort the multipart uploads of parts that will not be committed."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            for part in parts:
                own = _object(part)
                own.chunks.clear()
                upload, own.upload_id = own.upload_id, None
                if upload is None:
                    continue
                # A leftover is swept by a later run.
                with contextlib.suppress(StorageError), translated(self.where(own.path)):
                    await self.client.abort_multipart_upload(
                        Bucket=self.url.bucket, Key=own.key, UploadId=upload
                    )
                self.own_uploads.discard(upload)

    async def put(self, path: str, data: bytes) -> None:
        """A small file (dataset.json, index.json, a report) in one PUT."""
        digest = await anyio.to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
        with translated(self.where(path)):
            await self.client.put_object(
                Bucket=self.url.bucket,
                Key=self.url.key(path),
                Body=data,
                Metadata={"sha256": digest},
            )

    async def put_many(self, files: Sequence[tuple[str, bytes]]) -> list[StorageError | None]:
        """Each small file in its own PUT, a few at a time; a failing bucket raises."""
        results: list[StorageError | None] = [None] * len(files)
        fatal: list[BucketError] = []

        async def one(index: int, path: str, data: bytes) -> None:
            async with self.limit:
                try:
                    await self.put(path, data)
                except BucketError as exc:
                    fatal.append(exc)
                except StorageError as exc:
                    results[index] = exc

        async with anyio.create_task_group() as group:
            for index, (path, data) in enumerate(files):
                group.start_soon(one, index, path, data)
        if fatal:
            raise fatal[0]
        return results

    # -- reading and upkeep --------------------------------------------------------------------

    async def heads(self, paths: Sequence[str], size: int) -> list[bytes | None]:
        """A ranged GET of each object's first ``size`` bytes, a few at a time."""
        found: dict[str, bytes] = {}
        failures: list[StorageError] = []
        ranged = f"bytes=0-{max(size, 1) - 1}"

        async def head(path: str) -> None:
            try:
                async with self.limit:
                    with translated(self.where(path)):
                        got = await self.client.get_object(
                            Bucket=self.url.bucket, Key=self.url.key(path), Range=ranged
                        )
                        async with got["Body"] as body:
                            found[path] = await body.read()
            except StorageError as exc:
                if (error_code(exc.__cause__) or "") not in MISSING_CODES:
                    failures.append(exc)

        async with anyio.create_task_group() as group:
            for path in dict.fromkeys(paths):
                group.start_soon(head, path)
        if failures:
            raise failures[0]
        return [found.get(path) for path in paths]

    async def sizes(self, paths: Sequence[str]) -> list[int | None]:
        """One listing per directory holding many of ``paths`` (1,000 keys per request),
        a HEAD for each of the others: a done item costs no GET."""
        by_directory: dict[str, list[str]] = {}
        for path in paths:
            by_directory.setdefault(path.rsplit("/", 1)[0] if "/" in path else "", []).append(path)
        found: dict[str, int] = {}
        heads: list[str] = []
        for directory, members in by_directory.items():
            if len(members) >= LIST_FROM and directory:
                found.update(await self.listing(directory + "/"))
            else:
                heads.extend(members)

        async def head(path: str) -> None:
            async with self.limit:
                size = await self.size(path)
            if size is not None:
                found[path] = size

        async with anyio.create_task_group() as group:
            for path in heads:
                group.start_soon(head, path)
        return [found.get(path) for path in paths]

    async def listing(self, directory: str) -> dict[str, int]:
        """Every object under ``directory`` (relative, ending in '/'): path → size."""
        sizes: dict[str, int] = {}
        with translated(self.where(directory)):
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(
                Bucket=self.url.bucket, Prefix=self.url.key(directory)
            ):
                for entry in page.get("Contents", ()):
                    sizes[self.url.path(str(entry["Key"]))] = int(entry["Size"])
        return sizes

    async def size(self, path: str) -> int | None:
        """The object's size by HEAD; None when there is none."""
        try:
            with translated(self.where(path)):
                head = await self.client.head_object(Bucket=self.url.bucket, Key=self.url.key(path))
        except StorageError as exc:
            if (error_code(exc.__cause__) or "") in MISSING_CODES:
                return None
            raise
        return int(head["ContentLength"])

    async def delete(self, paths: Sequence[str]) -> int:
        existing = [p for p, s in zip(paths, await self.sizes(paths), strict=True) if s is not None]
        for start in range(0, len(existing), DELETE_BATCH):
            batch = existing[start : start + DELETE_BATCH]
            with translated(self.where()):
                await self.client.delete_objects(
                    Bucket=self.url.bucket,
                    Delete={"Objects": [{"Key": self.url.key(p)} for p in batch], "Quiet": True},
                )
        return len(existing)

    async def read(self, path: str, consume: Callable[[bytes], Awaitable[None]]) -> int | None:
        """Stream the object into ``consume`` a chunk at a time; its size, or None if absent."""
        try:
            with translated(self.where(path)):
                got = await self.client.get_object(Bucket=self.url.bucket, Key=self.url.key(path))
                async with got["Body"] as body:
                    while chunk := await body.read(MIB):
                        await consume(chunk)
        except StorageError as exc:
            if (error_code(exc.__cause__) or "") in MISSING_CODES:
                return None
            raise
        return int(got["ContentLength"])

    async def clock(self) -> float:
        """The object store's time, from the Date of an answer (uploads are stamped by it)."""
        with translated(str(self.url)):
            answer = await self.client.head_bucket(Bucket=self.url.bucket)
        date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            return parsedate_to_datetime(str(date)).timestamp()
        except (TypeError, ValueError):
            return time.time()

    async def sweep(self, older_than: float) -> int:
        """Abort multipart uploads under the prefix that other (killed) processes started before
        ``older_than``; never this process's own."""
        stale: list[tuple[str, str]] = []
        with translated(str(self.url)):
            paginator = self.client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.url.bucket, Prefix=self.url.key("")):
                for upload in page.get("Uploads", ()):
                    upload_id, key = str(upload["UploadId"]), str(upload["Key"])
                    if upload_id in self.own_uploads:
                        continue
                    if upload["Initiated"].timestamp() < older_than:
                        stale.append((key, upload_id))
        for key, upload_id in stale:
            with contextlib.suppress(StorageError), translated(key):
                await self.client.abort_multipart_upload(
                    Bucket=self.url.bucket, Key=key, UploadId=upload_id
                )
        return len(stale)


async def _hash(part: ObjectPart, data: bytes) -> None:
    """Hash the next stretch of the body: off the event loop when it is long."""
    if len(data) >= HASH_OFF_LOOP:
        await anyio.to_thread.run_sync(part._digest, data)
    else:
        part._digest(data)


def _object(part: Part) -> ObjectPart:
    if not isinstance(part, ObjectPart):
        raise TypeError(f"an ObjectStore commits its own parts, not {type(part).__name__}")
    return part


@functools.cache
def _model_loader() -> Any:
    """botocore's reader of the service models, shared by every client of the process: each
    new session would parse the S3 model's JSON again (~0.2 s; a run opens a few clients)."""
    from botocore.loaders import create_loader

    return create_loader()


@asynccontextmanager
async def open_object_store(url: str, pairs: Sequence[str]) -> AsyncIterator[ObjectStore]:
    """The store of ``s3://BUCKET/PREFIX``, its bucket checked before anything runs."""
    options = ObjectOptions.parse(pairs)
    try:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import AioSession
    except ImportError as exc:
        raise UsageError(
            "--out s3://... needs the s3 extra: pip install 'allen-mirror[s3]'"
        ) from exc
    session = AioSession(profile=options.profile)
    session.register_component("data_loader", _model_loader())
    s3_config: dict[str, str] = {}
    if options.addressing_style:
        s3_config["addressing_style"] = options.addressing_style
    config = AioConfig(
        max_pool_connections=max(options.concurrency, 10) * 2,
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=30,
        read_timeout=120,
        # The body's sha256 goes with each PUT (ChecksumSHA256: the store checks it); botocore
        # need not hash every body a second time for a CRC32 of its own.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3=s3_config or None,
    )
    with translated(url):
        client_context = session.create_client(
            "s3", endpoint_url=options.endpoint_url, region_name=options.region, config=config
        )
        client = await client_context.__aenter__()
    try:
        store = ObjectStore(client, BucketUrl.parse(url), options)
        try:
            # Fail fast where waiting cannot help: botocore would retry a refused or silent
            # endpoint for most of a minute before the first byte of the run.
            with anyio.fail_after(CHECK_SECONDS):
                await store.check()
        except BucketError as exc:  # a bucket name, a key or an endpoint the user gave
            raise UsageError(str(exc)) from exc
        except TimeoutError as exc:
            where = options.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
            raise UsageError(
                f"{url}: no answer from {where} within {CHECK_SECONDS:g} s "
                "(check AWS_ENDPOINT_URL or --storage-option endpoint_url=...)"
            ) from exc
        yield store
    finally:
        with anyio.CancelScope(shield=True):
            await client_context.__aexit__(None, None, None)
