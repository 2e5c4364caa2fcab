"""The commands that fetch: mirror, plan, sync, worker and demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from crawler.cli.app import app
from crawler.cli.common import (
    FILTER_FLAGS,
    common_options,
    finish,
    load,
    measured,
    metrics_options,
    report_option,
    run_async,
    selection_options,
    selection_options_but,
    selection_settings,
    storage_option,
)
from crawler.cli.summary import human_bytes
from crawler.config import Settings
from crawler.selection import Selection

dry_run_option = click.option(
    "--dry-run",
    is_flag=True,
    help="Print what would be fetched (counts, estimated bytes, examples); write nothing.",
)


def show_dry_run(settings: Settings, selection: Selection) -> None:
    """Seed and plan in memory, print what a run would fetch, exit 0."""
    from crawler.dryrun import dry_run_lines, run_dry

    dry = run_async(lambda: run_dry(settings, selection))
    for line in dry_run_lines(dry, human_bytes):
        click.echo(line)


@app.command()
@selection_options
@report_option
@dry_run_option
@metrics_options
def mirror(report_file: Path | None, dry_run: bool, **options: Any) -> None:
    """Mirror every section image of the selected data sets (resumes what came before).

    \b
    Examples:
      allen-mirror mirror --dataset 100141599 --downsample 4
      allen-mirror mirror --product 5 --transgenic-line Sst-IRES-Cre --dry-run
      allen-mirror mirror --dataset 126862385 --image section,projection --out /data/allen
    """
    from crawler.pipeline import run_mirror

    settings, selection = selection_settings(options)
    if dry_run:
        return show_dry_run(settings, selection)
    report = measured(
        settings,
        "mirror",
        lambda metrics: run_mirror(settings, selection, report_file=report_file, metrics=metrics),
    )
    finish(report, settings)


@app.command()
@selection_options
@report_option
@click.option("--prune", is_flag=True, help="Delete the files of items the API no longer lists.")
@click.option("--recheck", is_flag=True, help="Re-download done items and count changed ones.")
@dry_run_option
@metrics_options
def sync(
    report_file: Path | None, prune: bool, recheck: bool, dry_run: bool, **options: Any
) -> None:
    """Fetch what is new, flag what vanished (removed), keep the rest; for nightly runs.

    \b
    Examples:
      allen-mirror sync --dataset 100141599 --out /data/allen --no-progress
      allen-mirror sync --config nightly.toml --prune
    """
    from crawler.sync import run_sync

    settings, selection = selection_settings(options)
    if dry_run:
        return show_dry_run(settings, selection)
    report = measured(
        settings,
        "sync",
        lambda metrics: run_sync(
            settings,
            selection,
            prune=prune,
            recheck=recheck,
            report_file=report_file,
            metrics=metrics,
        ),
    )
    finish(report, settings)


@app.command()
@selection_options_but(api_base=False)
def demo(**options: Any) -> None:
    """The mirror job, offline: starts the built-in simulator and mirrors from it.

    Takes mirror's options but --api-base (the simulator is the API) [default selection:
    --dataset 100141599].

    \b
    Examples:
      allen-mirror demo
      allen-mirror demo --dataset 100141599 --sections 1-20 --out /tmp/demo
      allen-mirror demo --atlas 1 --annotation --image section
    """
    from crawler.simulator import serve_in_thread
    from crawler.simulator.ccf_volumes import ARCHIVE_PREFIX

    selecting = ("dataset", "ids_file", "product", "criteria", "atlas", *FILTER_FLAGS)
    if not any(options[name] for name in selecting):
        options["dataset"] = ("100141599",)
    with serve_in_thread() as simulator:
        options["api_base"] = simulator.base_url
        options["archive_base"] = options["archive_base"] or simulator.base_url + ARCHIVE_PREFIX
        click.echo(f"simulator of the Allen API at {simulator.base_url}", err=True)
        assert mirror.callback is not None
        mirror.callback(None, False, metrics_port=None, metrics_file=None, **options)


@app.command()
@selection_options
def plan(**options: Any) -> None:
    """Enumerate the selection and record its items as pending; downloads nothing.

    \b
    Examples:
      allen-mirror plan --product 5 --transgenic-line Sst-IRES-Cre --out /data/allen
      allen-mirror plan --ids-file experiments.txt --manifest postgresql://db/allen
    """
    from crawler.pipeline import run_plan

    settings, selection = selection_settings(options)
    report = run_async(lambda: run_plan(settings, selection))
    atlases = f"{report.atlases} atlas(es), " if report.atlases else ""
    click.echo(
        f"planned {report.data_sets} data set(s), {atlases}{report.images} image(s), "
        f"{report.planned} item(s) ({report.new_items} new), "
        f"estimated {human_bytes(report.estimated_bytes)} ({report.estimated_bytes} bytes) "
        f"in {report.seconds:.1f}s"
    )


@app.command()
@common_options
@click.option(
    "--api-base", help="API base URL [default: http://api.brain-map.org; env ALLEN_API_BASE]."
)
@click.option("--concurrency", type=int, help="Requests in flight in this worker [default: 8].")
@click.option(
    "--rate",
    type=float,
    help="Max requests per second of all workers together, 0 = no cap [default: 0].",
)
@click.option("--retries", type=int, help="Retries per request [default: 5].")
@click.option(
    "--timeout", type=float, help="Connect and idle-read timeout in seconds [default: 30]."
)
@click.option(
    "--max-item-bytes", type=int, help="Fail an item whose body passes N bytes [default: 4 GiB]."
)
@click.option(
    "--max-item-seconds", type=float, help="Fail a request not complete after N s [default: 3600]."
)
@click.option("--follow", is_flag=True, help="Keep polling for new items until a signal.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--log-format", help="console | json [default: console on a TTY, else json].")
@storage_option
@metrics_options
def worker(config: Path | None, follow: bool, no_progress: bool, **options: Any) -> None:
    """Fetch pending items that others planned; run as many as you like on a Postgres manifest.

    \b
    Examples:
      allen-mirror worker --out /data/allen
      allen-mirror worker --manifest postgresql://db/allen --follow --metrics-port 9464
    """
    from crawler.worker import run_worker

    settings = load(config, progress=False if no_progress else None, **options)
    report = measured(
        settings, "worker", lambda metrics: run_worker(settings, follow=follow, metrics=metrics)
    )
    finish(report, settings)
