"""``export --to s3://BUCKET/PREFIX``: the export is written to a local staging directory, then
each file goes to the bucket through the object store (multipart above a part, so memory stays
at one part per upload), and shards an earlier, larger export left under the prefix are
deleted, as on disk.

Staging keeps one writer for both targets: tar, Parquet and OME-Zarr writers need seekable,
renamable files, which objects are not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anyio

from crawler.errors import StorageError
from crawler.export.plan import SPLITS, is_shard_name
from crawler.objectstore import ObjectStore, open_object_store
from crawler.store import StoredFile

READ_BYTES = 1024 * 1024  # read from the staged file this much at a time
UPLOADS = 4  # files uploaded at once


def staged_files(root: Path) -> list[str]:
    """Every file under ``root``, as '/'-separated relative paths."""
    found: list[str] = []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            found.append(Path(directory, name).relative_to(root).as_posix())
    return sorted(found)


async def upload_file(store: ObjectStore, source: Path, path: str) -> StoredFile:
    """One staged file into the store, read and sent a stretch at a time."""
    async with store.part(path) as part:
        handle = await anyio.open_file(source, "rb")
        async with handle:
            while chunk := await handle.read(READ_BYTES):
                await part.write(chunk)
    [result] = await store.commit([part])
    if isinstance(result, StorageError):
        raise result
    return result


def stale(keys: Sequence[str], written: set[str]) -> list[str]:
    """Objects under the prefix an export writes and this one did not."""
    old: list[str] = []
    for path in keys:
        top, _, rest = path.partition("/")
        image = top in SPLITS and rest.partition("/")[0].endswith(".ome.zarr")
        if (image or ("/" not in path and is_shard_name(path))) and path not in written:
            old.append(path)
    return old


async def upload_export(url: str, storage_options: Sequence[str], staging: Path) -> int:
    """Upload the staged export to ``url``; returns the bytes sent."""
    files = staged_files(staging)
    sent = 0
    async with open_object_store(url, storage_options) as store:
        slots = anyio.Semaphore(UPLOADS)

        async def one(path: str) -> None:
            nonlocal sent
            async with slots:
                stored = await upload_file(store, staging / path, path)
            sent += stored.size

        async with anyio.create_task_group() as group:
            for path in files:
                group.start_soon(one, path)
        before = await store.listing("")
        await store.delete(stale(list(before), set(files)))
    return sent
