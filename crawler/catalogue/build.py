"""The catalogue command's work: read the manifest (async), then build the site in a thread."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio

from crawler.catalogue.gather import Spill, gather
from crawler.catalogue.site import BuildStats, render_site
from crawler.errors import StorageError
from crawler.listing import open_existing
from crawler.manifest.runs import list_runs

CATALOGUE_DIR = "catalogue"
RUNS = 500  # the newest runs on the history page


def default_index(out: Path) -> Path:
    """``OUT/catalogue/index.html``."""
    return out / CATALOGUE_DIR / "index.html"


async def build_catalogue(out: Path, manifest_url: str, index_file: Path) -> BuildStats:
    """Build (or bring up to date) the site whose index is ``index_file``.

    The manifest is only read; the spill files live in a temporary directory beside the site
    (same disk, removed at the end).
    """
    manifest = await open_existing(manifest_url)
    site = index_file.parent
    try:
        site.mkdir(parents=True, exist_ok=True)
        work = tempfile.TemporaryDirectory(prefix=".catalogue-", dir=site)
    except OSError as exc:
        await manifest.close()
        raise StorageError(f"cannot write the catalogue at {site}: {exc.strerror}") from exc
    with work as root:
        try:
            spill = Spill(Path(root))
            census = await gather(manifest, spill)
            runs = await list_runs(manifest, RUNS)
        finally:
            await manifest.close()
        return await anyio.to_thread.run_sync(
            lambda: render_site(out, index_file, census, spill, runs)
        )
