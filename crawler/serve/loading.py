"""Open a mirror for serving: its records from the JSON files, its done files from the manifest.

Everything is read once, at start: the manifest is opened without being migrated (a SQLite
manifest on a read-only mount as an immutable file) unless `--record` needs to write it, and
closed again when serving is read-only, so `serve` never holds the database while it answers.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import structlog
from sqlalchemy import select

from crawler.errors import UsageError
from crawler.listing import check_manifest_exists, read_only
from crawler.manifest import Manifest, Status, open_manifest
from crawler.manifest.models import items
from crawler.serve.files import FileIndex, HeldFile
from crawler.serve.records import Held, load
from crawler.serve.source import MirrorSource
from crawler.simulator.catalogue import Catalogue

log = structlog.get_logger("crawler.serve")

CHUNK = 20_000  # manifest rows per query while indexing


async def open_writable(manifest_url: str) -> Manifest:
    """The manifest for `--record`: it must exist and be writable (it is migrated as usual)."""
    check_manifest_exists(manifest_url)
    if read_only(manifest_url):
        raise UsageError("--record needs a writable mirror; this manifest is read-only")
    return await open_manifest(manifest_url)


async def index_files(manifest: Manifest, source: MirrorSource) -> None:
    """Add every done item of the manifest to the source's file index, a chunk at a time."""
    last = 0
    columns = (items.c.id, items.c.url, items.c.path, items.c.kind, items.c.image_id,
               items.c.size, items.c.sha256)  # fmt: skip
    while True:
        statement = (
            select(*columns)
            .where(items.c.status == Status.DONE.value, items.c.id > last)
            .order_by(items.c.id)
            .limit(CHUNK)
        )
        rows = await manifest.read(statement)
        for row in rows:
            add_item(source, row.url, row.path, row.kind, row.image_id, row.size, row.sha256)
        if len(rows) < CHUNK:
            return
        last = int(rows[-1].id)


def add_item(
    source: MirrorSource,
    url: str,
    path: str,
    kind: str,
    image_id: int | None,
    size: int | None,
    sha256: str | None,
) -> None:
    """Index one done file; an image item is keyed through its image's record."""
    image = None
    equalization = None
    if image_id is not None:
        found = source.image(int(image_id))
        if found is not None:
            image = found[1]
            rows = source.lookup("Equalization", "section_data_set_id", image["data_set_id"])
            equalization = rows[0] if rows else None
    source.files.add(url, HeldFile(path, size, sha256), kind, image, equalization)


def _load(out: Path) -> tuple[Catalogue, Held]:
    if not out.is_dir():
        raise UsageError(f"no mirror at {out}")
    return load(out)


async def open_source(out: Path, manifest: Manifest) -> MirrorSource:
    """The mirror at OUT as a data source (records and files), logged as one event."""
    catalogue, held = await anyio.to_thread.run_sync(_load, out)
    source = MirrorSource(out, catalogue, held, FileIndex())
    await index_files(manifest, source)
    log.info(
        "serve.loaded",
        out=str(out),
        data_sets=len(held.data_sets),
        atlases=len(set(held.atlases.values())),
        images=len(source.files.images),
        other_files=len(source.files.others) + len(source.files.archive),
        unplaced_images=source.files.unplaced,
    )
    return source


async def load_mirror(out: Path, manifest_url: str) -> MirrorSource:
    """Read-only: open the manifest without migrating it (as an immutable file where it cannot
    be written), index its done files, close it."""
    check_manifest_exists(manifest_url)
    manifest = await open_manifest(manifest_url, upgrade=False, read_only=read_only(manifest_url))
    try:
        return await open_source(out, manifest)
    finally:
        await manifest.close()
