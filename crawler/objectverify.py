"""Verify for a mirror in object storage: every done object re-hashed by a streaming GET.

The same verdicts as on disk (crawler/verify.py): 'missing' when there is no object, 'corrupt'
when its size or sha256 differs from the manifest's (or, with ``decode``, its image does not
decode). Objects are read a few at a time, each in chunks, so memory stays flat.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import anyio
import structlog

from crawler.config import Settings
from crawler.filecheck import decodes
from crawler.kinds import body_rule
from crawler.manifest import Manifest, Status
from crawler.objectstore import ObjectStore, open_object_store
from crawler.progress import RunProgress
from crawler.session import RunReport

log = structlog.get_logger("crawler.verify")


async def object_state(
    store: ObjectStore, path: str, size: int, sha256: str | None, *, decode: bool
) -> str | None:
    """None when the object matches; 'missing' or 'corrupt' otherwise."""
    digest = hashlib.sha256()
    kept: list[bytes] = []

    async def consume(chunk: bytes) -> None:
        await anyio.to_thread.run_sync(digest.update, chunk)
        if decode:
            kept.append(chunk)

    found = await store.read(path, consume)
    if found is None:
        return "missing"
    if found != size or digest.hexdigest() != sha256:
        return "corrupt"
    if decode:
        image = io.BytesIO(b"".join(kept))
        if not await anyio.to_thread.run_sync(decodes, image):
            return "corrupt"
    return None


async def find_object_problems(
    manifest: Manifest,
    settings: Settings,
    report: RunReport,
    progress: RunProgress,
    *,
    decode: bool = False,
) -> list[tuple[int, str]]:
    """Check every done object, ``concurrency`` of them at a time; (id, problem) of bad ones."""
    problems: list[tuple[int, str]] = []
    async with open_object_store(settings.bucket_url, settings.storage_options) as raw:
        store = raw
        slots = anyio.Semaphore(store.options.concurrency)

        async def check(row: dict[str, Any]) -> None:
            try:
                state = await object_state(
                    store,
                    str(row["path"]),
                    int(row["size"] or 0),
                    row["sha256"],
                    decode=decode and body_rule(str(row["kind"])).image,
                )
            finally:
                slots.release()
            report.verified += 1
            progress.advance(1, int(row["size"] or 0))
            if state is None:
                return
            problems.append((int(row["id"]), state))
            if state == "missing":
                report.missing += 1
            else:
                report.corrupt += 1
            log.warning("verify.problem", path=row["path"], problem=state)

        async with anyio.create_task_group() as group:
            async for row in manifest.rows(Status.DONE.value):
                await slots.acquire()
                group.start_soon(check, row)
    return sorted(problems)
