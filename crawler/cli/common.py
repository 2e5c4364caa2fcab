"""What the commands share: options, parsing of what users type, settings, and the finish.

Everything a user can get wrong here raises UsageError with one line naming it; the entry point
(crawler/cli/app.py) turns that into the message and exit code 2.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import click
import structlog

from crawler import logs
from crawler.cli.summary import summary_lines
from crawler.config import Settings, load_settings
from crawler.errors import UsageError
from crawler.logs import uses_json
from crawler.selection import Selection

if TYPE_CHECKING:
    from crawler.metrics import RunMetrics
    from crawler.session import RunReport

MAX_LISTED_FAILURES = 50

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def common_options(function: F) -> F:
    """Options every command that reads the mirror shares."""
    options = [
        click.option(
            "--out",
            "-o",
            type=str,  # a directory, or s3://BUCKET/PREFIX (config.py tells them apart)
            help="Mirror directory or s3://BUCKET/PREFIX [default: ./mirror].",
        ),
        click.option(
            "--manifest", help="Manifest SQLAlchemy URL [default: sqlite:///OUT/manifest.sqlite]."
        ),
        click.option(
            "--config",
            type=click.Path(path_type=Path),
            help="TOML config file [default: none; env ALLEN_MIRROR_CONFIG].",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def selection_options(function: F) -> F:
    """Options of the commands that enumerate and fetch."""
    return selection_options_but()(function)


def selection_options_but(*, api_base: bool = True) -> Callable[[F], F]:
    """The selection options, without ``--api-base`` for ``demo`` (which brings its own API)."""
    return lambda function: _with_options(function, _selection_option_list(api_base=api_base))


def _with_options(function: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        function = option(function)
    return common_options(function)


def _selection_option_list(*, api_base: bool) -> list[Callable[[F], F]]:
    options: list[Callable[[F], F]] = [
        click.option("--dataset", "-d", multiple=True, help="SectionDataSet id (repeatable)."),
        click.option(
            "--ids-file",
            multiple=True,
            type=click.Path(path_type=Path, dir_okay=False),
            help="File of SectionDataSet ids, one per line; # comments and blank lines allowed "
            "(repeatable).",
        ),
        click.option(
            "--product",
            multiple=True,
            help="Every SectionDataSet of a product, e.g. 5 (repeatable).",
        ),
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
        click.option(
            "--atlas", multiple=True, help="Every AtlasImage of an Atlas, e.g. 1 (repeatable)."
        ),
        click.option("--sections", help="Only section numbers A-B (inclusive) [default: all]."),
        click.option(
            "--ignore-missing",
            is_flag=True,
            default=None,
            help="Report data set ids the API does not know and go on with the rest.",
        ),
        click.option(
            "--image",
            multiple=True,
            help="Image kinds: section, expression, projection; comma-separated or repeated "
            "[default: section].",
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
        click.option(
            "--tile", type=int, help="Fetch images as T x T tier-pixel tiles [default: 0 = whole]."
        ),
        click.option(
            "--with",
            "extras",
            multiple=True,
            help="Extras: grid, unionizes, ontology, annotation, template; comma-separated or "
            "repeated [default: none].",
        ),
        click.option(
            "--grid-types",
            help="Projection grid types, comma-separated [default: projection_density].",
        ),
        click.option(
            "--grid-resolution",
            type=int,
            help="Projection grid resolution: 10, 25, 50, 100 µm [default: 25].",
        ),
        click.option(
            "--ccf-resolution",
            type=int,
            help="CCF annotation/template resolution: 10, 25, 50, 100 µm [default: 25].",
        ),
        click.option(
            "--archive-base",
            help="Where the CCF volumes live [default: http://download.alleninstitute.org/"
            "informatics-archive/current-release/mouse_ccf].",
        ),
        *(
            [
                click.option(
                    "--api-base",
                    help="API base URL [default: http://api.brain-map.org; env ALLEN_API_BASE].",
                )
            ]
            if api_base
            else []
        ),
        click.option("--downsample", type=int, help="Tier: halve each side N times [default: 4]."),
        click.option("--quality", type=int, help="JPEG quality 0-100 [default: the server's]."),
        click.option("--concurrency", type=int, help="Requests in flight [default: 8]."),
        click.option(
            "--rate", type=float, help="Max requests per second, 0 = no cap [default: 0]."
        ),
        click.option("--retries", type=int, help="Retries per request [default: 5]."),
        click.option(
            "--timeout", type=float, help="Connect and idle-read timeout in seconds [default: 30]."
        ),
        *item_limit_options(),
        click.option(
            "--include-failed",
            is_flag=True,
            default=None,
            help="Also fetch data sets and sections the API marks failed.",
        ),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
        click.option("--log-format", help="console | json [default: console on a TTY, else json]."),
        storage_option,
    ]
    return options


def metrics_options(function: F) -> F:
    """Prometheus metrics of a long run (crawler/metrics.py)."""
    options = [
        click.option(
            "--metrics-port",
            type=click.IntRange(1, 65535),
            help="Serve Prometheus metrics on this port while the run lasts [default: none].",
        ),
        click.option(
            "--metrics-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Write the metrics here at the end (node-exporter textfile format, .prom) "
            "[default: none].",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def measured(
    settings: Settings, command: str, run: Callable[[RunMetrics | None], Awaitable[RunReport]]
) -> RunReport:
    """Run a fetching command with its metrics served and written, when asked for."""
    if settings.metrics_port is None and settings.metrics_file is None:
        return run_async(lambda: run(None))  # prometheus_client is not even imported
    from crawler.metrics import run_metrics

    with run_metrics(settings, command) as metrics:
        report = run_async(lambda: run(metrics))
        if metrics is not None:
            metrics.end(report, report.exit_code, report.seconds)
    return report


storage_option = click.option(
    "--storage-option",
    "storage_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Object storage setting for --out s3://..., e.g. endpoint_url=..., region=... "
    "(repeatable).",
)


def item_limit_options() -> list[Callable[[F], F]]:
    """The caps on one download, shared by every command that fetches."""
    return [
        click.option(
            "--max-item-bytes",
            type=int,
            help="Fail an item whose body passes N bytes [default: 4 GiB].",
        ),
        click.option(
            "--max-item-seconds",
            type=float,
            help="Fail a request not complete after N seconds [default: 3600].",
        ),
    ]


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


def load(config: Path | None, **flags: Any) -> Settings:
    """Settings from defaults, the config file, the environment and the flags; logging set up."""
    settings = load_settings(config, flags)
    logs.configure(settings.log_format, settings.log_level)
    return settings


_PROCESS = {"own": False}  # set by the console entry: this process runs one command, then exits


def own_process() -> None:
    """Called by the console entry (``allen-mirror``, ``python -m crawler``), not by callers
    that run commands in a longer-lived process (the tests)."""
    _PROCESS["own"] = True


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine on the asyncio backend.

    In a process of its own, what the imports made (SQLAlchemy's, aiohttp's, ~hundreds of
    thousands of objects) is frozen out of the garbage collector first: they live until exit,
    and every full collection walked them again while a sync read 100,000 manifest rows (a
    no-op sync of a whole product: ~0.4 s less here). Frozen objects are never freed, hence
    not in a process that runs many commands.
    """
    if _PROCESS["own"]:
        gc.freeze()
    return anyio.run(main, backend="asyncio")


# Friendly filter flags and the settings (config keys) that hold them, comma-separated.
FILTER_FLAGS = {
    "transgenic_line": "transgenic_lines",
    "injection_structure": "injection_structures",
    "gene": "genes",
    "plane": "planes",
}


def selection_settings(options: dict[str, Any]) -> tuple[Settings, Selection]:
    """The settings and the selection of a command that enumerates and fetches. Each selection
    flag replaces its config key (``--dataset`` and ``--ids-file`` replace ``datasets``)."""
    from crawler.selection import parse_filters

    ids = parse_ids(list(options.pop("dataset")))
    for path in options.pop("ids_file"):
        ids += read_ids_file(path)
    selected = {
        "datasets": tuple(dict.fromkeys(ids)),
        "products": parse_ids(list(options.pop("product")), "product"),
        "criteria": parse_criteria(list(options.pop("criteria"))),
        "atlases": parse_ids(list(options.pop("atlas")), "atlas"),
    }
    parse_sections(options["sections"])  # a bad flag is named before the config is read
    filter_flags = {
        setting: ",".join(options.pop(flag)) or None for flag, setting in FILTER_FLAGS.items()
    }
    images, extras = options.pop("image"), options.pop("extras")
    no_progress = options.pop("no_progress")
    config = options.pop("config")
    settings = load(
        config,
        progress=False if no_progress else None,
        images=",".join(images) if images else None,
        extras=",".join(extras) if extras else None,
        **{key: value or None for key, value in selected.items()},
        **filter_flags,
        **options,
    )
    selection = Selection(
        data_sets=tuple(dict.fromkeys(settings.datasets)),
        products=settings.products,
        criteria=parse_criteria(list(settings.criteria)),
        atlases=settings.atlases,
        sections=parse_sections(settings.sections),
        filters=parse_filters(
            **{setting: getattr(settings, setting) for setting in FILTER_FLAGS.values()},
            with_descendants=settings.with_descendants,
        ),
    )
    if selection.empty:
        raise UsageError(
            "nothing selected: give --dataset, --ids-file, --product, --criteria, --atlas, "
            "--transgenic-line, --injection-structure, --gene or --plane (or datasets, "
            "products, criteria, atlases, ... in the --config file)"
        )
    if settings.annotation and not selection.atlases:
        raise UsageError("--annotation applies to atlas images: add --atlas ID")
    return settings, selection


report_option = click.option(
    "--report",
    "report_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the JSON run report here [default: OUT/.reports/<UTC time>-<command>.json].",
)


def finish(report: RunReport, settings: Settings) -> None:
    """The summary (an event for programs, a few lines for people), the list of failures, what
    other selections left, and the exit code of a command that fetches or verifies."""
    if uses_json(settings.log_format):
        structlog.get_logger("crawler").info("run.summary", **report.summary())
    else:
        where = settings.bucket_url or str(settings.out.resolve())  # where to look, absolute
        sys.stderr.write("".join(f"{line}\n" for line in summary_lines(report, where)))
    if report.other_pending:
        sys.stderr.write(
            f"{report.other_pending} other pending item(s) belong to other selections and were "
            "not fetched; 'allen-mirror worker' fetches everything pending\n"
        )
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
