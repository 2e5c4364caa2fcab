"""``catalogue``: a static HTML site of the mirror (index, a page per data set, run history)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from crawler.cli.app import app
from crawler.cli.common import common_options, load, run_async
from crawler.errors import UsageError


@app.command()
@common_options
@click.option(
    "--to",
    "to",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The index page to write; the other pages and thumbs/ go beside it "
    "[default: OUT/catalogue/index.html].",
)
def catalogue(out: Path | None, manifest: str | None, config: Path | None, to: Path | None) -> None:
    """Write a static HTML catalogue of the mirror, readable offline from file://.

    \b
    Examples:
      allen-mirror catalogue --out mirror               # mirror/catalogue/index.html
      allen-mirror catalogue --out mirror --to /srv/www/allen/index.html

    Thumbnails are made once per image (by sha256) and pages rewritten only when their
    content changed, so running it after every sync is cheap.
    """
    from crawler.catalogue import build_catalogue, default_index

    settings = load(config, out=out, manifest=manifest)
    if settings.bucket_url:
        raise UsageError("catalogue reads a mirror on disk (--out DIR), not s3://")
    index_file = (to or default_index(settings.out)).absolute()
    started = time.monotonic()
    stats = run_async(
        lambda: build_catalogue(settings.out.absolute(), settings.manifest_url, index_file)
    )
    click.echo(
        f"catalogue {index_file}: {stats.data_sets} data set(s) and atlas(es), "
        f"{stats.pages_rendered} page(s) rendered, {stats.pages_written} written, "
        f"{stats.thumbs_made} thumbnail(s) made, in {time.monotonic() - started:.1f} s"
    )
