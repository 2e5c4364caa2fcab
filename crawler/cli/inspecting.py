"""The commands that read or check a mirror: verify, ls, status and history."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from crawler.cli.app import app
from crawler.cli.common import (
    common_options,
    finish,
    load,
    report_option,
    run_async,
    storage_option,
)
from crawler.cli.summary import human_bytes
from crawler.errors import UsageError


@app.command()
@common_options
@report_option
@click.option("--repair", is_flag=True, help="Re-download missing and corrupt files.")
@click.option("--decode", is_flag=True, help="Also decode every image fully (slower).")
@click.option("--api-base", help="API base URL for --repair [default: http://api.brain-map.org].")
@click.option("--concurrency", type=int, help="Requests in flight for --repair [default: 8].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--log-format", help="console | json [default: console on a TTY, else json].")
@storage_option
def verify(
    out: Path | None,
    manifest: str | None,
    config: Path | None,
    report_file: Path | None,
    repair: bool,
    decode: bool,
    api_base: str | None,
    concurrency: int | None,
    no_progress: bool,
    log_format: str | None,
    storage_options: tuple[str, ...],
) -> None:
    """Re-hash every done file against the manifest; exit 1 while problems remain.

    \b
    Examples:
      allen-mirror verify --out /data/allen
      allen-mirror verify --out /data/allen --repair --decode
    """
    from crawler.verify import run_verify

    settings = load(
        config,
        out=out,
        manifest=manifest,
        api_base=api_base,
        concurrency=concurrency,
        progress=False if no_progress else None,
        log_format=log_format,
        storage_options=storage_options,
    )
    report = run_async(
        lambda: run_verify(settings, repair_files=repair, decode=decode, report_file=report_file)
    )
    click.echo(
        f"verified {report.verified} file(s): {report.missing} missing, {report.corrupt} corrupt"
        + (f", {report.repaired} repaired" if repair else "")
    )
    finish(report, settings)


@app.command()
@common_options
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N runs [default: all].")
def history(
    out: Path | None,
    manifest: str | None,
    config: Path | None,
    json_output: bool,
    limit: int | None,
) -> None:
    """The runs recorded in the manifest: command, selection, start, end (UTC), outcome, counts.

    \b
    Examples:
      allen-mirror history --out /data/allen --limit 10
      allen-mirror history --out /data/allen --json --limit 1
    """
    from crawler.listing import open_existing, utc_text
    from crawler.manifest.runs import list_runs

    settings = load(config, out=out, manifest=manifest)

    async def main() -> list[dict[str, Any]]:
        handle = await open_existing(settings.manifest_url)
        try:
            return await list_runs(handle, limit)
        finally:
            await handle.close()

    runs = run_async(main)
    for run in runs:  # one form for every time shown: UTC, ISO 8601 with Z
        for name in ("started_at", "finished_at"):
            run[name] = utc_text(run[name]) if run[name] is not None else None
    if not runs and not json_output:
        click.echo("no runs yet")
        return
    if json_output:
        for run in runs:
            click.echo(json.dumps(run, default=str, separators=(",", ":")))
        return
    for run in runs:
        counts = run["counts"] or {}
        brief = ", ".join(
            f"{counts[k]} {k}"
            for k in ("items_planned", "downloaded", "changed", "removed", "failed", "corrupt")
            if counts.get(k)
        )
        click.echo(
            f"#{run['id']:<4} {run['command']:<7} {run['outcome']:<11} "
            f"{run['started_at']} -> {run['finished_at'] or '-'}  "
            f"{json.dumps(run['selection'], separators=(',', ':'))}  {brief or 'nothing to do'}"
        )


@app.command("ls")
@common_options
@click.option(
    "--status",
    "status",
    help="Only items of this status: pending|done|failed|removed|superseded [default: all].",
)
@click.option("--format", "fmt", default="jsonl", show_default=True, help="jsonl | table.")
def ls_command(
    out: Path | None, manifest: str | None, config: Path | None, status: str | None, fmt: str
) -> None:
    """List the manifest's items, one JSON object per line (or a table).

    \b
    Examples:
      allen-mirror ls --out /data/allen --status failed
      allen-mirror ls --out /data/allen --format table
    """
    from crawler.listing import check_status, open_existing, write_ls

    if fmt not in ("jsonl", "table"):
        raise UsageError(f"unknown format {fmt!r}: expected jsonl or table")
    check_status(status)
    settings = load(config, out=out, manifest=manifest)

    async def main() -> None:
        handle = await open_existing(settings.manifest_url)
        try:
            await write_ls(handle, status, fmt, sys.stdout)
        finally:
            await handle.close()

    run_async(main)


@app.command("status")
@common_options
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
def status_command(
    out: Path | None, manifest: str | None, config: Path | None, json_output: bool
) -> None:
    """Counts per status and per data set, size on disk, the live rate, workers and claims.

    \b
    Examples:
      allen-mirror status --out /data/allen
      allen-mirror status --manifest postgresql://db/allen --json
    """
    from crawler.listing import open_existing, status_document, write_status

    settings = load(config, out=out, manifest=manifest)

    async def main() -> dict[str, Any]:
        handle = await open_existing(settings.manifest_url)
        try:
            return await status_document(handle)
        finally:
            await handle.close()

    document = run_async(main)
    if json_output:
        click.echo(json.dumps(document, indent=1))
    else:
        where = f"in {settings.bucket_url}" if settings.bucket_url else "on disk"
        write_status(document, sys.stdout, human_bytes, where=where)
