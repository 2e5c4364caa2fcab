"""OUT, wherever it is: a directory (``LocalStore``) or ``s3://BUCKET/PREFIX`` (``ObjectStore``).

Commands open the store here and nowhere else, so nothing below them needs to know which one
it writes to; the object store's client lives for the ``async with`` block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from crawler.config import Settings
from crawler.localstore import LocalStore
from crawler.lock import OutputLock
from crawler.store import Store


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The store of OUT; a bucket is checked (exists, lets us in) before anything runs."""
    if settings.bucket_url:
        from crawler.objectstore import open_object_store  # aiobotocore loads only for s3

        async with open_object_store(settings.bucket_url, settings.storage_options) as store:
            yield store
    else:
        yield LocalStore(settings.out, fsync=settings.fsync, group_sync=settings.group_sync)


def output_lock(settings: Settings, command: str, database: Path | None) -> OutputLock | None:
    """One run at a time on a SQLite manifest: the lock sits in OUT, or, when OUT is a bucket
    (no directory to lock), beside the manifest file. A PostgreSQL manifest is shared by
    design (claims under leases) and takes none."""
    if not settings.exclusive:
        return None
    if settings.bucket_url and database is not None:
        return OutputLock(
            database.parent,
            command,
            name=f"{database.name}.lock",
            what=f"{settings.bucket_url} (manifest {database})",
        )
    return OutputLock(settings.out, command)
