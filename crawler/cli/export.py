"""``export``: a mirror as a training dataset (WebDataset, Parquet or OME-Zarr)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from crawler.cli.app import app
from crawler.cli.common import (
    common_options,
    load,
    parse_ids,
    parse_sections,
    run_async,
    storage_option,
)
from crawler.errors import UsageError

if TYPE_CHECKING:
    from crawler.config import Settings
    from crawler.export.plan import ExportOptions


@app.command()
@common_options
@click.option(
    "--to", "dest", required=True, help="Export directory, or s3://BUCKET/PREFIX (staged locally)."
)
@click.option(
    "--format",
    "fmt",
    default="webdataset",
    show_default=True,
    help="webdataset | parquet | ome-zarr.",
)
@click.option("--kinds", help="Images per sample: section,projection,expression [default: all].")
@click.option("--shard-size", type=int, default=1000, show_default=True, help="Samples per shard.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True)
@click.option("--test-fraction", type=float, default=0.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split hash.")
@click.option("--labels", is_flag=True, help="Structure ids per pixel from the mirrored CCF.")
@click.option("--dataset", "-d", multiple=True, help="Only this data set (repeatable).")
@click.option("--sections", help="Only section numbers A-B (inclusive) [default: all].")
@click.option(
    "--tier",
    type=click.IntRange(min=0),
    help="The tier (downsample) to export [default: each image's coarsest mirrored].",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--log-format", help="console | json [default: console on a TTY, else json].")
@storage_option
def export(
    out: Path | None,
    manifest: str | None,
    config: Path | None,
    dest: str,
    fmt: str,
    kinds: str | None,
    shard_size: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    labels: bool,
    dataset: tuple[str, ...],
    sections: str | None,
    tier: int | None,
    no_progress: bool,
    log_format: str | None,
    storage_options: tuple[str, ...],
) -> None:
    """Export the mirror's samples (one SectionImage at one tier) as a training dataset.

    Splits go by data set (a hash of its id and --seed); shards are DEST/{split}-{shard:05d}.tar
    or .parquet, with DEST/index.parquet and DEST/_stats.json; ome-zarr writes
    DEST/{split}/{key}.ome.zarr.

    \b
    Examples:
      allen-mirror export --out /data/allen --to /data/train --shard-size 1000
      allen-mirror export --out /data/allen --to /data/zarr --format ome-zarr --labels
    """
    from crawler.export.plan import (
        ExportOptions,
        check_fractions,
        check_shard_size,
        parse_format,
        parse_kinds,
    )
    from crawler.export.run import run_export
    from crawler.reader.mirror import Mirror

    options = ExportOptions(
        fmt=parse_format(fmt),
        kinds=parse_kinds(kinds),
        shard_size=shard_size,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        labels=labels,
        data_sets=parse_ids(list(dataset)) or None,
        sections=parse_sections(sections),
        tiers=(tier,) if tier is not None else None,
    )
    check_fractions(val_fraction, test_fraction)
    check_shard_size(shard_size)
    settings = load(
        config,
        out=out,
        manifest=manifest,
        progress=False if no_progress else None,
        log_format=log_format,
        storage_options=storage_options,
    )
    from crawler.listing import check_manifest_exists

    if settings.bucket_url:
        raise UsageError("export reads a mirror on disk (--out DIR); --to may be s3://...")
    check_manifest_exists(settings.manifest_url)
    if dest.startswith("s3://"):
        return export_to_bucket(settings, dest, options)
    with Mirror(settings.out, settings.manifest_url) as mirror:
        report = run_export(mirror, Path(dest), options, progress=settings.progress)
    document = report.as_dict()
    counts = ", ".join(f"{n} {split}" for split, n in document["samples"].items()) or "none"
    skipped = sum(document["skipped"]["samples"].values())
    not_done = sum(document["skipped"]["items_not_done"].values())
    click.echo(
        f"exported {report.samples} sample(s) ({counts}) to {dest} as {options.fmt}; "
        f"{skipped} sample(s) skipped, {not_done} item(s) not done (see {dest}/_stats.json)"
    )


def export_to_bucket(settings: Settings, url: str, options: ExportOptions) -> None:
    """Export into a staging directory, then upload it under ``url`` (crawler/export/upload.py)."""
    import tempfile

    from crawler.export.run import run_export
    from crawler.export.upload import upload_export
    from crawler.reader.mirror import Mirror

    url = url.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="allen-mirror-export-") as staging:
        with Mirror(settings.out, settings.manifest_url) as mirror:
            report = run_export(mirror, Path(staging), options, progress=settings.progress)
        sent = run_async(lambda: upload_export(url, settings.storage_options, Path(staging)))
    click.echo(
        f"exported {report.samples} sample(s) to {url} as {options.fmt} "
        f"({sent} bytes uploaded; see {url}/_stats.json)"
    )
