"""The command line: parse, load settings, configure logging, run the pipeline, map to an exit code.

Exit codes: 0 all done; 1 items failed, the API was unreachable, or the disk/manifest failed;
2 bad usage or input; 3 another run holds the output directory; 130/143 stopped by SIGINT/SIGTERM.
Anything a user can cause ends in one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
import structlog

from crawler import logs
from crawler.config import Settings, load_settings
from crawler.errors import (
    AllenMirrorError,
    LockedError,
    ManifestError,
    RemoteError,
    StorageError,
    UsageError,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3
MAX_LISTED_FAILURES = 50

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _common(function: F) -> F:
    """Options every command that reads the mirror shares."""
    options = [
        click.option(
            "--out",
            "-o",
            type=click.Path(path_type=Path),
            help="Mirror directory [default: ./mirror].",
        ),
        click.option(
            "--manifest", help="Manifest SQLAlchemy URL [default: sqlite:///OUT/manifest.sqlite]."
        ),
        click.option("--config", type=click.Path(path_type=Path), help="TOML config file."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _selection(function: F) -> F:
    """Options of the commands that enumerate and fetch."""
    options = [
        click.option("--dataset", "-d", multiple=True, help="SectionDataSet id (repeatable)."),
        click.option(
            "--api-base",
            help="API base URL [default: http://api.brain-map.org; env ALLEN_API_BASE].",
        ),
        click.option("--downsample", help="Tier: halve each side N times [default: 4]."),
        click.option("--quality", help="JPEG quality 0-100 [default: the server's]."),
        click.option("--concurrency", help="Requests in flight [default: 8]."),
        click.option("--rate", help="Max requests per second, 0 = no cap [default: 0]."),
        click.option("--retries", help="Retries per request [default: 5]."),
        click.option("--timeout", help="Connect and idle-read timeout in seconds [default: 30]."),
        click.option(
            "--include-failed",
            is_flag=True,
            default=None,
            help="Also fetch data sets and sections the API marks failed.",
        ),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
        click.option("--log-format", help="console | json [default: console on a TTY, else json]."),
    ]
    for option in reversed(options):
        function = option(function)
    return _common(function)


@click.group(
    name="allen-mirror",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="allen-mirror", prog_name="allen-mirror")
def app() -> None:
    """Mirror Allen Brain Atlas section images: complete, polite, resumable, never corrupt."""


def parse_ids(values: list[str] | None) -> tuple[int, ...]:
    """Data set ids must be positive integers; say which one is not."""
    ids: list[int] = []
    for value in values or []:
        for part in value.replace(",", " ").split():
            if not part.isdigit() or int(part) <= 0:
                raise UsageError(f"not a data set id: {part!r} (expected a positive integer)")
            ids.append(int(part))
    return tuple(ids)


def _settings(config: Path | None, **flags: Any) -> Settings:
    settings = load_settings(config, flags)
    logs.configure(settings.log_format, settings.log_level)
    return settings


def _run(main: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(main, backend="asyncio")


def _selection_settings(options: dict[str, Any]) -> tuple[Settings, Any]:
    from crawler.pipeline import Selection

    ids = parse_ids(list(options.pop("dataset")))
    if not ids:
        raise UsageError("nothing selected: give at least one --dataset ID")
    no_progress = options.pop("no_progress")
    config = options.pop("config")
    settings = _settings(config, progress=False if no_progress else None, **options)
    return settings, Selection(data_sets=ids)


@app.command()
@_selection
def mirror(**options: Any) -> None:
    """Mirror every section image of the selected data sets (resumes what came before)."""
    from crawler.pipeline import run_mirror

    settings, selection = _selection_settings(options)
    report = _run(lambda: run_mirror(settings, selection))
    structlog.get_logger("crawler").info("run.summary", **report.summary())
    if report.failures:
        shown = report.failures[:MAX_LISTED_FAILURES]
        sys.stderr.write(f"{report.failed} item(s) failed after their retries:\n")
        for outcome in shown:
            sys.stderr.write(f"  {outcome.url}  {outcome.error}\n")
        if report.failed > len(shown):
            sys.stderr.write(f"  ... and {report.failed - len(shown)} more\n")
        sys.stderr.write(
            "list them with: allen-mirror ls --status failed; a new run retries them\n"
        )
    if report.interrupted_by is not None:
        raise SystemExit(128 + report.interrupted_by)
    raise SystemExit(EXIT_FAILED if report.failed else EXIT_OK)


@app.command()
@_selection
def demo(**options: Any) -> None:
    """The mirror job, offline: starts the built-in simulator and mirrors from it."""
    from crawler.simulator import serve_in_thread

    if not options["dataset"]:
        options["dataset"] = ("100141599",)
    if options["api_base"]:
        raise UsageError("demo runs against its own simulator; use 'mirror --api-base' instead")
    with serve_in_thread() as simulator:
        options["api_base"] = simulator.base_url
        click.echo(f"simulator of the Allen API at {simulator.base_url}", err=True)
        mirror.callback(**options)  # type: ignore[misc]


@app.command()
@_selection
def plan(**options: Any) -> None:
    """Enumerate the selection and record its items as pending; downloads nothing."""
    from crawler.pipeline import run_plan

    settings, selection = _selection_settings(options)
    report = _run(lambda: run_plan(settings, selection))
    click.echo(
        f"planned {report.data_sets} data set(s), {report.images} image(s), "
        f"{report.planned} item(s) ({report.new_items} new) in {report.seconds:.1f}s"
    )


@app.command("ls")
@_common
@click.option("--status", "status", help="Only items of this status: pending|done|failed|removed.")
@click.option("--format", "fmt", default="jsonl", show_default=True, help="jsonl | table.")
def ls_command(
    out: Path | None, manifest: str | None, config: Path | None, status: str | None, fmt: str
) -> None:
    """List the manifest's items, one JSON object per line (or a table)."""
    from crawler.listing import check_status, open_existing, write_ls

    if fmt not in ("jsonl", "table"):
        raise UsageError(f"unknown format {fmt!r}: expected jsonl or table")
    check_status(status)
    settings = _settings(config, out=out, manifest=manifest)

    async def main() -> None:
        handle = await open_existing(settings.manifest_url)
        try:
            await write_ls(handle, status, fmt, sys.stdout)
        finally:
            await handle.close()

    _run(main)


@app.command("status")
@_common
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
def status_command(
    out: Path | None, manifest: str | None, config: Path | None, json_output: bool
) -> None:
    """Counts per status and per data set, and bytes on disk."""
    from crawler.listing import open_existing, status_document, write_status

    settings = _settings(config, out=out, manifest=manifest)

    async def main() -> dict[str, Any]:
        handle = await open_existing(settings.manifest_url)
        try:
            return await status_document(handle)
        finally:
            await handle.close()

    document = _run(main)
    if json_output:
        click.echo(json.dumps(document, indent=1))
    else:
        write_status(document, sys.stdout)


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
    """Serve the offline simulator of the Allen API until interrupted."""
    from crawler.simulator import run as run_simulator

    if not 0.0 <= fault_rate <= 1.0:
        raise UsageError(f"fault-rate must be between 0 and 1, got {fault_rate}")
    if latency_ms < 0:
        raise UsageError("latency-ms must not be negative")
    run_simulator(port=port, host=host, latency_ms=latency_ms, fault_rate=fault_rate, seed=seed)


def _first_error(exc: BaseException) -> BaseException:
    """Task groups wrap errors in groups; the user wants the one that mattered."""
    while isinstance(exc, BaseExceptionGroup):
        chosen = next(
            (e for e in exc.exceptions if isinstance(e, AllenMirrorError)), exc.exceptions[0]
        )
        exc = chosen
    return exc


def exit_code_for(exc: BaseException) -> int:
    """The one place errors become exit codes."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, LockedError):
        return EXIT_LOCKED
    if isinstance(exc, RemoteError | StorageError | ManifestError | AllenMirrorError):
        return EXIT_FAILED
    return EXIT_FAILED


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RemoteError):
        where = f" ({exc.url})" if exc.url else ""
        return f"the API failed after retries: {exc}{where}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``allen-mirror`` and ``python -m crawler``; returns the exit code."""
    try:
        result = app.main(args=argv, prog_name="allen-mirror", standalone_mode=False)
        return int(result) if isinstance(result, int) else EXIT_OK
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        message = exc.format_message().replace("\n", " ")
        sys.stderr.write(f"allen-mirror: error: {message}\n")
        return EXIT_USAGE
    except click.Abort:
        sys.stderr.write("allen-mirror: interrupted\n")
        return 128 + signal.SIGINT
    except KeyboardInterrupt:
        sys.stderr.write("allen-mirror: interrupted\n")
        return 128 + signal.SIGINT
    except BaseException as raised:
        error = _first_error(raised)
        if isinstance(error, SystemExit):
            return int(error.code or 0) if isinstance(error.code, int) else EXIT_FAILED
        if isinstance(error, KeyboardInterrupt):
            sys.stderr.write("allen-mirror: interrupted\n")
            return 128 + signal.SIGINT
        if isinstance(error, AllenMirrorError):
            sys.stderr.write(f"allen-mirror: error: {_describe(error)}\n")
            return exit_code_for(error)
        if isinstance(error, OSError):
            sys.stderr.write(f"allen-mirror: error: {error.strerror or error}\n")
            return EXIT_FAILED
        raise


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())
