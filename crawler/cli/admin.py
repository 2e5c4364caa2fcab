"""The administrative commands: the manifest's schema (db) and the simulator (simulate)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from crawler.cli.app import app
from crawler.cli.common import common_options, load, run_async
from crawler.errors import UsageError


@app.group()
def db() -> None:
    """The manifest's schema (Alembic migrations; every command also upgrades at start)."""


def _revision(revision: str | None) -> str:
    from crawler.manifest.database import head_revision

    head = head_revision()
    if revision is None:
        return "none (no schema yet)"
    return f"{revision} (head)" if revision == head else f"{revision} (head is {head})"


@db.command("upgrade")
@common_options
@click.argument("revision", default="head")
def db_upgrade(out: Path | None, manifest: str | None, config: Path | None, revision: str) -> None:
    """Migrate the manifest to REVISION [default: head]; safe to run from many hosts at once.

    \b
    Examples:
      allen-mirror db upgrade --out /data/allen
      allen-mirror db upgrade --manifest postgresql://db/allen
    """
    from crawler.manifest.database import upgrade

    settings = load(config, out=out, manifest=manifest)
    click.echo(_revision(run_async(lambda: upgrade(settings.manifest_url, revision))))


@db.command("current")
@common_options
def db_current(out: Path | None, manifest: str | None, config: Path | None) -> None:
    """Print the manifest's revision.

    \b
    Example:
      allen-mirror db current --out /data/allen
    """
    from crawler.listing import check_manifest_exists
    from crawler.manifest.database import current

    settings = load(config, out=out, manifest=manifest)
    check_manifest_exists(settings.manifest_url)
    click.echo(_revision(run_async(lambda: current(settings.manifest_url))))


@db.command("downgrade")
@common_options
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask before 'base' drops every table.")
def db_downgrade(
    out: Path | None, manifest: str | None, config: Path | None, revision: str, yes: bool
) -> None:
    """Step the schema back to REVISION, such as 0002, -1 or base (which drops every table).

    \b
    Examples:
      allen-mirror db downgrade 0004 --out /data/allen
      allen-mirror db downgrade base --yes --manifest postgresql://host/allen
    """
    from crawler.listing import check_manifest_exists
    from crawler.manifest.database import downgrade

    settings = load(config, out=out, manifest=manifest)
    check_manifest_exists(settings.manifest_url)
    if revision == "base" and not yes:
        # Dropping every table loses the whole record of the mirror: ask, or need --yes.
        if not sys.stdin.isatty():
            raise UsageError("'db downgrade base' drops every table of the manifest: add --yes")
        click.confirm("Drop every table of the manifest (the record of the mirror)?", abort=True)
    click.echo(_revision(run_async(lambda: downgrade(settings.manifest_url, revision))))


@app.command()
@click.option(
    "--port", type=int, default=8642, show_default=True, help="Port (0 picks a free one)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--latency-ms", type=float, default=0.0, show_default=True, help="Latency per response."
)
@click.option(
    "--fault-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of requests given a fault, 0..1.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the catalogue and faults."
)
def simulate(port: int, host: str, latency_ms: float, fault_rate: float, seed: int) -> None:
    """Serve the offline simulator of the Allen API until interrupted.

    \b
    Examples:
      allen-mirror simulate --port 8642
      allen-mirror simulate --latency-ms 50 --fault-rate 0.05 --seed 1
    """
    from crawler.simulator import run as run_simulator

    if not 0.0 <= fault_rate <= 1.0:
        raise UsageError(f"fault-rate must be between 0 and 1, got {fault_rate}")
    if latency_ms < 0:
        raise UsageError("latency-ms must not be negative")
    run_simulator(port=port, host=host, latency_ms=latency_ms, fault_rate=fault_rate, seed=seed)
