"""The command line: parse, load settings, configure logging, run the pipeline, map to an exit code.

Exit codes: 0 all done; 1 items failed, the API was unreachable, or the disk/manifest failed;
2 bad usage or input; 3 another run holds the output directory; 130/143 stopped by SIGINT/SIGTERM.
Anything a user can cause ends in one line on stderr, never a traceback.
"""

from __future__ import annotations

import gc
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
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AllenMirrorError,
    RemoteError,
    UsageError,
    exit_code_for,
    first_error,
)

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
            "--ids-file",
            multiple=True,
            type=click.Path(path_type=Path, dir_okay=False),
            help="File of SectionDataSet ids, one per line; # comments and blank lines allowed.",
        ),
        click.option("--product", multiple=True, help="Every SectionDataSet of a product, e.g. 5."),
        click.option(
            "--transgenic-line",
            "transgenic_line",
            multiple=True,
            help="Only data sets of donors with this line, e.g. Sst-IRES-Cre (repeatable: any).",
        ),
        click.option(
            "--injection-structure",
            "injection_structure",
            multiple=True,
            help="Only data sets injected in this structure, e.g. VISp (repeatable: any).",
        ),
        click.option(
            "--with-descendants",
            is_flag=True,
            default=None,
            help="--injection-structure also matches every structure below it in the ontology.",
        ),
        click.option(
            "--gene", multiple=True, help="Only ISH data sets of this gene, e.g. Pdyn (repeatable)."
        ),
        click.option(
            "--plane", multiple=True, help="Only data sets cut coronal or sagittal (repeatable)."
        ),
        click.option(
            "--criteria",
            multiple=True,
            help="Free SectionDataSet criteria, e.g. \"genes[acronym$eq'Pdyn']\".",
        ),
        click.option("--atlas", multiple=True, help="Every AtlasImage of an Atlas, e.g. 1."),
        click.option("--sections", help="Only section numbers A-B (inclusive)."),
        click.option(
            "--image",
            multiple=True,
            help="section | expression | projection (repeatable) [default: section].",
        ),
        click.option(
            "--annotation",
            is_flag=True,
            default=None,
            help="Atlas images: also the annotated drawings.",
        ),
        click.option(
            "--range",
            help="Colour window: auto | none | rl,ru,gl,gu,bl,bu (0-4095) [default: auto].",
        ),
        click.option("--tile", help="Fetch images as T x T tier-pixel tiles [default: 0 = whole]."),
        click.option(
            "--with",
            "extras",
            multiple=True,
            help="Extras: grid, unionizes (comma-separated or repeated).",
        ),
        click.option(
            "--grid-types",
            help="Projection grid types, comma-separated [default: projection_density].",
        ),
        click.option(
            "--grid-resolution",
            help="Projection grid resolution: 10, 25, 50, 100 µm [default: 25].",
        ),
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


def parse_ids(values: list[str] | None, what: str = "data set") -> tuple[int, ...]:
    """Ids must be positive integers; say which one is not."""
    ids: list[int] = []
    for value in values or []:
        for part in value.replace(",", " ").split():
            if not (part.isascii() and part.isdigit()) or int(part) <= 0:
                article = "an" if what[0] in "aeiou" else "a"
                raise UsageError(f"not {article} {what} id: {part!r} (expected a positive integer)")
            ids.append(int(part))
    return tuple(ids)


def parse_ids_text(text: str, source: str) -> tuple[int, ...]:
    """One data set id per line; ``#`` starts a comment; blank lines are skipped."""
    ids: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        if not (value.isascii() and value.isdigit()) or int(value) <= 0:
            raise UsageError(
                f"{source}, line {number}: not a data set id: {value!r} "
                "(expected one positive integer per line)"
            )
        ids.append(int(value))
    return tuple(ids)


def read_ids_file(path: Path) -> tuple[int, ...]:
    """The ids of an ``--ids-file``; an unreadable file is a usage error naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read ids file {path}: {reason}") from exc
    return parse_ids_text(text, f"ids file {path}")


def parse_sections(text: str | None) -> tuple[int, int] | None:
    """``--sections A-B`` (or a single number A): whole numbers, A not above B."""
    if text is None:
        return None
    first, dash, last = text.strip().partition("-")
    parts = [first.strip(), last.strip() if dash else first.strip()]
    if not all(p.isascii() and p.isdigit() for p in parts) or int(parts[0]) > int(parts[1]):
        raise UsageError(
            f"invalid --sections {text!r}: expected A-B, whole section numbers with A <= B"
        )
    return int(parts[0]), int(parts[1])


def parse_criteria(values: list[str]) -> tuple[str, ...]:
    """Free criteria are filters only: our stages order and page the query."""
    criteria: list[str] = []
    for value in values:
        text = value.strip()
        if not text or "::" in text:
            raise UsageError(
                f"invalid --criteria {value!r}: expected RMA filters such as "
                "[failed$eqfalse] or products[id$eq5], not stages"
            )
        criteria.append(text)
    return tuple(criteria)


def human_bytes(count: int) -> str:
    """``123.4 MB``: decimal units, for estimates people read."""
    size = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _settings(config: Path | None, **flags: Any) -> Settings:
    settings = load_settings(config, flags)
    logs.configure(settings.log_format, settings.log_level)
    return settings


def _collect_from_here() -> None:
    """Start-up is over: turn the cyclic garbage collector (off since ``main``) back on.

    Start-up allocates ~100,000 objects that live as long as the process (SQLAlchemy's,
    aiohttp's and structlog's module graphs); collecting while they are created cost a tenth of
    start-up and found nothing. Freezing them keeps every later collection from re-scanning them.
    """
    gc.freeze()
    gc.enable()


def _run(main: Callable[[], Awaitable[T]]) -> T:
    _collect_from_here()
    return anyio.run(main, backend="asyncio")


# Friendly filter flags and the settings (config keys) that hold them, comma-separated.
FILTER_FLAGS = {
    "transgenic_line": "transgenic_lines",
    "injection_structure": "injection_structures",
    "gene": "genes",
    "plane": "planes",
}


def _selection_settings(options: dict[str, Any]) -> tuple[Settings, Any]:
    from crawler.selection import Selection, parse_filters

    ids = parse_ids(list(options.pop("dataset")))
    for path in options.pop("ids_file"):
        ids += read_ids_file(path)
    data_sets = tuple(dict.fromkeys(ids))
    products = parse_ids(list(options.pop("product")), "product")
    criteria = parse_criteria(list(options.pop("criteria")))
    atlases = parse_ids(list(options.pop("atlas")), "atlas")
    sections = parse_sections(options.pop("sections"))
    filter_flags = {
        setting: ",".join(options.pop(flag)) or None for flag, setting in FILTER_FLAGS.items()
    }
    annotation = options["annotation"]
    images, extras = options.pop("image"), options.pop("extras")
    no_progress = options.pop("no_progress")
    config = options.pop("config")
    settings = _settings(
        config,
        progress=False if no_progress else None,
        images=",".join(images) if images else None,
        extras=",".join(extras) if extras else None,
        **filter_flags,
        **options,
    )
    selection = Selection(
        data_sets=data_sets,
        products=products,
        criteria=criteria,
        atlases=atlases,
        sections=sections,
        filters=parse_filters(
            **{setting: getattr(settings, setting) for setting in FILTER_FLAGS.values()},
            with_descendants=settings.with_descendants,
        ),
    )
    if selection.empty:
        raise UsageError(
            "nothing selected: give --dataset, --ids-file, --product, --criteria, --atlas, "
            "--transgenic-line, --injection-structure, --gene or --plane"
        )
    if annotation and not selection.atlases:
        raise UsageError("--annotation applies to atlas images: add --atlas ID")
    return settings, selection


_report_option = click.option(
    "--report",
    "report_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the JSON run report here [default: OUT/.reports/<UTC time>-<command>.json].",
)


def _finish(report: Any) -> None:
    """Summary event, the list of failures, and the exit code of a fetching command."""
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
    raise SystemExit(report.exit_code)


@app.command()
@_selection
@_report_option
def mirror(report_file: Path | None, **options: Any) -> None:
    """Mirror every section image of the selected data sets (resumes what came before)."""
    from crawler.pipeline import run_mirror

    settings, selection = _selection_settings(options)
    _finish(_run(lambda: run_mirror(settings, selection, report_file=report_file)))


@app.command()
@_selection
@_report_option
@click.option("--prune", is_flag=True, help="Delete the files of items the API no longer lists.")
@click.option("--recheck", is_flag=True, help="Re-download done items and count changed ones.")
def sync(report_file: Path | None, prune: bool, recheck: bool, **options: Any) -> None:
    """Fetch what is new, flag what vanished (removed), keep the rest; for nightly runs."""
    from crawler.sync import run_sync

    settings, selection = _selection_settings(options)
    report = _run(
        lambda: run_sync(settings, selection, prune=prune, recheck=recheck, report_file=report_file)
    )
    _finish(report)


@app.command()
@_common
@_report_option
@click.option("--repair", is_flag=True, help="Re-download missing and corrupt files.")
@click.option("--api-base", help="API base URL for --repair [default: http://api.brain-map.org].")
@click.option("--concurrency", help="Requests in flight for --repair [default: 8].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--log-format", help="console | json.")
def verify(
    out: Path | None,
    manifest: str | None,
    config: Path | None,
    report_file: Path | None,
    repair: bool,
    api_base: str | None,
    concurrency: str | None,
    no_progress: bool,
    log_format: str | None,
) -> None:
    """Re-hash every done file against the manifest; exit 1 while problems remain."""
    from crawler.verify import run_verify

    settings = _settings(
        config,
        out=out,
        manifest=manifest,
        api_base=api_base,
        concurrency=concurrency,
        progress=False if no_progress else None,
        log_format=log_format,
    )
    report = _run(lambda: run_verify(settings, repair_files=repair, report_file=report_file))
    click.echo(
        f"verified {report.verified} file(s): {report.missing} missing, {report.corrupt} corrupt"
        + (f", {report.repaired} repaired" if repair else "")
    )
    _finish(report)


@app.command()
@_common
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N runs.")
def history(
    out: Path | None,
    manifest: str | None,
    config: Path | None,
    json_output: bool,
    limit: int | None,
) -> None:
    """The runs recorded in the manifest: command, selection, start, end, outcome, counts."""
    from crawler.listing import open_existing
    from crawler.manifest.runs import list_runs

    settings = _settings(config, out=out, manifest=manifest)

    async def main() -> list[dict[str, Any]]:
        handle = await open_existing(settings.manifest_url)
        try:
            return await list_runs(handle, limit)
        finally:
            await handle.close()

    runs = _run(main)
    if json_output:
        for run in runs:
            click.echo(json.dumps(run, default=str, separators=(",", ":")))
        return
    for run in runs:
        counts = run["counts"] or {}
        brief = ", ".join(
            f"{counts[k]} {k}"
            for k in ("downloaded", "changed", "removed", "failed", "corrupt")
            if counts.get(k)
        )
        finished = run["finished_at"] or "-"
        click.echo(
            f"#{run['id']:<4} {run['command']:<7} {run['outcome']:<11} "
            f"{run['started_at']:%Y-%m-%d %H:%M:%S} -> {finished}  "
            f"{json.dumps(run['selection'], separators=(',', ':'))}  {brief or 'nothing to do'}"
        )


@app.command()
@_selection
def demo(**options: Any) -> None:
    """The mirror job, offline: starts the built-in simulator and mirrors from it."""
    from crawler.simulator import serve_in_thread

    selecting = ("dataset", "ids_file", "product", "criteria", "atlas", *FILTER_FLAGS)
    if not any(options[name] for name in selecting):
        options["dataset"] = ("100141599",)
    if options["api_base"]:
        raise UsageError("demo runs against its own simulator; use 'mirror --api-base' instead")
    with serve_in_thread() as simulator:
        options["api_base"] = simulator.base_url
        click.echo(f"simulator of the Allen API at {simulator.base_url}", err=True)
        assert mirror.callback is not None
        mirror.callback(None, **options)


@app.command()
@_selection
def plan(**options: Any) -> None:
    """Enumerate the selection and record its items as pending; downloads nothing."""
    from crawler.pipeline import run_plan

    settings, selection = _selection_settings(options)
    report = _run(lambda: run_plan(settings, selection))
    atlases = f"{report.atlases} atlas(es), " if report.atlases else ""
    click.echo(
        f"planned {report.data_sets} data set(s), {atlases}{report.images} image(s), "
        f"{report.planned} item(s) ({report.new_items} new), "
        f"estimated {human_bytes(report.estimated_bytes)} ({report.estimated_bytes} bytes) "
        f"in {report.seconds:.1f}s"
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
@_common
@click.option(
    "--api-base", help="API base URL [default: http://api.brain-map.org; env ALLEN_API_BASE]."
)
@click.option("--concurrency", help="Requests in flight in this worker [default: 8].")
@click.option("--rate", help="Max requests per second of all workers together, 0 = no cap.")
@click.option("--retries", help="Retries per request [default: 5].")
@click.option("--timeout", help="Connect and idle-read timeout in seconds [default: 30].")
@click.option("--follow", is_flag=True, help="Keep polling for new items until a signal.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--log-format", help="console | json [default: console on a TTY, else json].")
def worker(config: Path | None, follow: bool, no_progress: bool, **options: Any) -> None:
    """Fetch pending items that others planned; run as many as you like on a Postgres manifest."""
    from crawler.worker import run_worker

    settings = _settings(config, progress=False if no_progress else None, **options)
    _finish(_run(lambda: run_worker(settings, follow=follow)))


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
@_common
@click.argument("revision", default="head")
def db_upgrade(out: Path | None, manifest: str | None, config: Path | None, revision: str) -> None:
    """Migrate the manifest to REVISION [default: head]; safe to run from many hosts at once."""
    from crawler.manifest.database import upgrade

    settings = _settings(config, out=out, manifest=manifest)
    click.echo(_revision(_run(lambda: upgrade(settings.manifest_url, revision))))


@db.command("current")
@_common
def db_current(out: Path | None, manifest: str | None, config: Path | None) -> None:
    """Print the manifest's revision."""
    from crawler.listing import check_manifest_exists
    from crawler.manifest.database import current

    settings = _settings(config, out=out, manifest=manifest)
    check_manifest_exists(settings.manifest_url)
    click.echo(_revision(_run(lambda: current(settings.manifest_url))))


@db.command("downgrade")
@_common
@click.argument("revision")
def db_downgrade(
    out: Path | None, manifest: str | None, config: Path | None, revision: str
) -> None:
    """Step the schema back to REVISION, such as 0002, -1 or base (which drops every table)."""
    from crawler.listing import check_manifest_exists
    from crawler.manifest.database import downgrade

    settings = _settings(config, out=out, manifest=manifest)
    check_manifest_exists(settings.manifest_url)
    click.echo(_revision(_run(lambda: downgrade(settings.manifest_url, revision))))


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
    _collect_from_here()
    run_simulator(port=port, host=host, latency_ms=latency_ms, fault_rate=fault_rate, seed=seed)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RemoteError):
        where = f" ({exc.url})" if exc.url else ""
        return f"the API failed after retries: {exc}{where}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``allen-mirror`` and ``python -m crawler``; returns the exit code."""
    gc.disable()  # until the command has imported what it needs (see _collect_from_here)
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
        error = first_error(raised)
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
    finally:
        gc.enable()


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())
