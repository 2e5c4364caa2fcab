"""Settings: one home for defaults, merged file < environment < flags into one frozen object.

The object is passed down explicitly; nothing reads global state after start-up.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from crawler import plan
from crawler.errors import UsageError

T = TypeVar("T")

DEFAULT_API_BASE = "http://api.brain-map.org"
ENV_PREFIX = "ALLEN_MIRROR_"
MIN_TILE, MAX_TILE = 16, 8192  # tier pixels; the service renders at most tens of megapixels


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run may tune; the defaults are polite to a single shared server."""

    api_base: str = DEFAULT_API_BASE
    out: Path = Path("mirror")
    manifest: str | None = None  # SQLAlchemy URL; None means a SQLite file inside OUT
    # --out s3://BUCKET/PREFIX puts the mirror in object storage (``out`` is then unused);
    # storage_options are the object store's KEY=VALUE settings (crawler/objectstore.py).
    bucket_url: str = ""
    storage_options: tuple[str, ...] = ()
    downsample: int = 4
    quality: int | None = None
    include_failed: bool = False  # failed data sets and sections are skipped unless asked
    images: str = "section"  # image kinds, comma-separated: section, expression, projection
    annotation: bool = False  # atlas images: also the annotated drawings
    range: str = "auto"  # colour window: auto (the Equalization), none, or rl,ru,gl,gu,bl,bu
    tile: int = 0  # tile size in tier pixels; 0 = whole images
    extras: str = ""  # --with: grid, unionizes, ontology, annotation, template (comma-separated)
    grid_types: str = "projection_density"  # projection grid types, comma-separated
    grid_resolution: int = 25  # µm per voxel of projection grids: 10, 25, 50 or 100
    archive_base: str = plan.DEFAULT_ARCHIVE_BASE  # the CCF volumes' host and directory
    ccf_resolution: int = 25  # µm per voxel of the CCF annotation and template: 10, 25, 50, 100
    # The selection (crawler/selection.py), so a nightly job is `sync --config job.toml`; a flag
    # replaces its key (--dataset and --ids-file replace datasets, --product products, ...).
    datasets: tuple[int, ...] = ()  # --dataset, --ids-file
    products: tuple[int, ...] = ()  # --product
    criteria: tuple[str, ...] = ()  # --criteria: free SectionDataSet criteria
    atlases: tuple[int, ...] = ()  # --atlas
    sections: str | None = None  # --sections A-B
    ignore_missing: bool = False  # --ignore-missing: unknown data set ids are reported, skipped
    # Friendly selection filters (crawler/selection.py), comma-separated; empty filters nothing.
    transgenic_lines: str = ""  # --transgenic-line
    injection_structures: str = ""  # --injection-structure
    with_descendants: bool = False  # injection structures include everything below them
    genes: str = ""  # --gene
    planes: str = ""  # --plane: coronal, sagittal
    concurrency: int = 8
    rate: float = 0.0  # requests per second over every request; 0 means no cap
    retries: int = 5
    timeout: float = 30.0  # connect and idle-read timeout of one request, seconds
    # The largest files mirrored are 10 µm volumes (projection grids, CCF NRRDs): hundreds of
    # MB, the template about 1 GB. 4 GiB leaves room for those and still cuts a runaway body
    # before it fills a disk; images are capped lower (crawler/kinds.py).
    max_item_bytes: int = 4 * 1024**3
    # One request, start to end: the largest real file (about 1 GB) takes under 45 minutes even
    # at the 0.4 MB/s the live service sometimes gives; a body trickling in a few bytes at a
    # time, which the idle-read timeout never notices, is cut here.
    max_item_seconds: float = 3600.0
    retry_wait_initial: float = 1.0
    retry_wait_max: float = 60.0
    retry_after_max: float = 300.0
    retry_deadline: float = 1800.0  # give up on one item after this many seconds of retrying
    page_size: int = 2000
    manifest_batch: int = 500
    manifest_flush_seconds: float = 0.5
    fsync: bool = True
    group_sync: bool = True  # Linux: one syncfs per batch of finished files, not one fsync each
    progress: bool = True
    log_format: str = "auto"  # auto | console | json
    log_level: str = "info"
    grace_seconds: float = 5.0  # how long in-flight items may finish after the first signal
    lease_seconds: float = 600.0  # a claim not renewed for this long may be taken by another
    manifest_retry_seconds: float = 120.0  # how long a lost database connection is waited for
    poll_seconds: float = 10.0  # worker --follow: how often to look for new pending items
    metrics_port: int | None = None  # serve Prometheus metrics on this port during the run
    metrics_file: Path | None = None  # write them here (node-exporter textfile) at the end

    @property
    def where(self) -> str:
        """OUT as people typed it: a directory, or s3://BUCKET/PREFIX."""
        return self.bucket_url or str(self.out)

    @property
    def manifest_url(self) -> str:
        """The manifest URL as given, or the SQLite file every mirror carries by default."""
        return self.manifest or f"sqlite:///{(self.out / 'manifest.sqlite').resolve()}"

    def plan_options(self) -> plan.PlanOptions:
        """The plan-shaping settings, parsed; a UsageError names the setting that is wrong."""

        def parsed(name: str, parse: Callable[[], T]) -> T:
            try:
                return parse()
            except ValueError as exc:
                raise UsageError(f"invalid {name}: {exc}") from exc

        extras = self.extras.strip()
        return plan.PlanOptions(
            downsample=self.downsample,
            quality=self.quality,
            kinds=parsed(
                "images (--image)",
                lambda: plan.parse_choices(self.images, plan.IMAGE_KINDS, "image kind"),
            ),
            range=parsed("range", lambda: plan.parse_range(self.range)),
            tile=self.tile,
            annotation=self.annotation,
            extras=parsed(
                "extras (--with)", lambda: plan.parse_choices(extras, plan.EXTRAS, "extra")
            )
            if extras
            else (),
            grid_types=parsed(
                "grid-types",
                lambda: plan.parse_choices(self.grid_types, plan.GRID_TYPES, "type"),
            ),
            grid_resolution=self.grid_resolution,
            archive_base=self.archive_base,
            ccf_resolution=self.ccf_resolution,
        )

    @property
    def exclusive(self) -> bool:
        """A SQLite manifest serves one process, under the output-directory lock."""
        from crawler.manifest.database import is_sqlite  # the database layer loads on use

        return is_sqlite(self.manifest_url)


_FIELDS = {f.name: f for f in fields(Settings)}
_LOG_FORMATS = ("auto", "console", "json")
_LOG_LEVELS = ("debug", "info", "warning", "error")


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a raw value from a file, the environment or a flag into the field's type."""
    field = _FIELDS[name]
    kind = field.type if isinstance(field.type, str) else str(field.type)
    try:
        if value is None:
            if "None" in kind:
                return None
            raise ValueError("a value is required")
        if kind.startswith("tuple"):
            return _coerce_tuple(value, int if kind.startswith("tuple[int") else str)
        if kind.startswith("Path"):
            if name == "out" and "://" in str(value):
                return str(value)  # an object store URL: load_settings moves it to bucket_url
            return Path(str(value)).expanduser()
        if kind.startswith("tuple"):
            if isinstance(value, list | tuple):
                return tuple(str(v) for v in value)
            return tuple(v.strip() for v in str(value).split(",") if v.strip())
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"expected a whole number, got {value!r}")
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got {value!r}")
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid {name.replace('_', '-')} in {source}: {exc}") from exc


def _coerce_tuple(value: Any, item: type[int] | type[str]) -> tuple[Any, ...]:
    """A list (TOML, flags) or, for ids, a comma-separated string (the environment)."""
    if isinstance(value, str):
        value = value.split(",") if item is int else [value]
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list, got {value!r}")
    if item is str:
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {value!r}")
        return tuple(value)
    ids: list[int] = []
    for v in value:
        text = str(v).strip() if not isinstance(v, bool) else ""
        if not (text.isascii() and text.isdigit()) or int(text) <= 0:
            raise ValueError(f"expected positive whole numbers, got {v!r}")
        ids.append(int(text))
    return tuple(ids)


def _check(settings: Settings) -> Settings:
    """Reject values no run could use, naming the setting."""
    problems: list[str] = []
    if settings.downsample < 0 or settings.downsample > 16:
        problems.append(f"downsample must be between 0 and 16, got {settings.downsample}")
    if settings.quality is not None and not 0 <= settings.quality <= 100:
        problems.append(f"quality must be between 0 and 100, got {settings.quality}")
    if settings.concurrency < 1 or settings.concurrency > 1024:
        problems.append(f"concurrency must be between 1 and 1024, got {settings.concurrency}")
    if settings.rate < 0:
        problems.append(f"rate must be 0 (no cap) or positive, got {settings.rate}")
    if settings.retries < 0 or settings.retries > 100:
        problems.append(f"retries must be between 0 and 100, got {settings.retries}")
    if settings.timeout <= 0:
        problems.append(f"timeout must be positive, got {settings.timeout}")
    if settings.max_item_bytes < 1:
        problems.append(f"max-item-bytes must be positive, got {settings.max_item_bytes}")
    if settings.max_item_seconds <= 0:
        problems.append(f"max-item-seconds must be positive, got {settings.max_item_seconds}")
    for name in ("retry_wait_initial", "retry_wait_max", "retry_after_max", "retry_deadline"):
        if getattr(settings, name) < 0:
            problems.append(f"{name.replace('_', '-')} must not be negative")
    if not 1 <= settings.page_size <= 25000:
        problems.append(f"page-size must be between 1 and 25000, got {settings.page_size}")
    if settings.manifest_batch < 1:
        problems.append("manifest-batch must be at least 1")
    if settings.manifest_retry_seconds < 0:
        problems.append("manifest-retry-seconds must not be negative")
    if settings.lease_seconds < 1:
        problems.append(f"lease-seconds must be at least 1, got {settings.lease_seconds}")
    if settings.poll_seconds <= 0:
        problems.append(f"poll-seconds must be positive, got {settings.poll_seconds}")
    if settings.metrics_port is not None and not 1 <= settings.metrics_port <= 65535:
        problems.append(f"metrics-port must be between 1 and 65535, got {settings.metrics_port}")
    if settings.log_format not in _LOG_FORMATS:
        problems.append(f"log-format must be one of {', '.join(_LOG_FORMATS)}")
    if settings.log_level not in _LOG_LEVELS:
        problems.append(f"log-level must be one of {', '.join(_LOG_LEVELS)}")
    problems.extend(_plan_problems(settings))
    problems.extend(_bucket_problems(settings))
    if settings.api_base.rstrip("/").endswith("/api/v2"):
        base = settings.api_base.rstrip("/")[: -len("/api/v2")]
        problems.append(
            f"api-base {settings.api_base!r} ends with /api/v2, which allen-mirror adds itself: "
            f"use {base!r}"
        )
    for name in ("api_base", "archive_base"):
        value = getattr(settings, name)
        if not value.startswith(("http://", "https://")):
            flag = name.replace("_", "-")
            problems.append(f"{flag} must be an http:// or https:// URL, got {value!r}")
    if problems:
        raise UsageError(problems[0])
    return dataclasses.replace(
        settings,
        api_base=settings.api_base.rstrip("/"),
        archive_base=settings.archive_base.rstrip("/"),
    )


def _bucket_problems(settings: Settings) -> list[str]:
    """--out s3://BUCKET/PREFIX: a known scheme, a bucket, and a manifest outside the bucket."""
    if not settings.bucket_url:
        return []
    scheme, _, rest = settings.bucket_url.partition("://")
    if scheme != "s3":
        return [f"--out {settings.bucket_url!r}: only s3:// object storage is supported"]
    if not rest.split("/", 1)[0]:
        return [f"--out {settings.bucket_url!r}: expected s3://BUCKET/PREFIX"]
    if settings.manifest is None:
        return [
            f"--out {settings.bucket_url} needs --manifest (sqlite:///PATH/manifest.sqlite or "
            "postgresql://...): a bucket cannot hold the manifest"
        ]
    return []


def _plan_problems(settings: Settings) -> list[str]:
    """What to fetch: image kinds, colour window, tiles and extras, each named in the message."""
    problems: list[str] = []
    try:
        settings.plan_options()
    except UsageError as exc:
        problems.append(str(exc))
    if settings.tile != 0 and not MIN_TILE <= settings.tile <= MAX_TILE:
        problems.append(
            f"tile must be 0 (whole images) or between {MIN_TILE} and {MAX_TILE}, "
            f"got {settings.tile}"
        )
    if settings.grid_resolution not in plan.GRID_RESOLUTIONS:
        allowed = ", ".join(str(r) for r in plan.GRID_RESOLUTIONS)
        problems.append(
            f"grid-resolution must be one of {allowed} (µm), got {settings.grid_resolution}"
        )
    if settings.ccf_resolution not in plan.CCF_RESOLUTIONS:
        allowed = ", ".join(str(r) for r in plan.CCF_RESOLUTIONS)
        problems.append(
            f"ccf-resolution must be one of {allowed} (µm), got {settings.ccf_resolution}"
        )
    return problems


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file; every key must name a setting (dashes or underscores)."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise UsageError(f"config file not found: {path}") from exc
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"invalid config file {path}: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            close = difflib.get_close_matches(name, _FIELDS, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"unknown setting {key!r} in config file {path}{hint}")
        values[name] = _coerce(name, value, f"config file {path}")
    return values


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from ALLEN_MIRROR_<NAME> variables, plus ALLEN_API_BASE for the API base."""
    values: dict[str, Any] = {}
    if environ.get("ALLEN_API_BASE"):
        values["api_base"] = environ["ALLEN_API_BASE"]
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
            name = key[len(ENV_PREFIX) :].lower()
            if name not in _FIELDS:
                raise UsageError(f"unknown setting in environment variable {key}")
            values[name] = _coerce(name, value, f"environment variable {key}")
    return values


def load_settings(
    config_file: Path | None,
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults < config file < environment < flags (flags set to None are absent)."""
    env = os.environ if environ is None else environ
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(read_config_file(config_file))
    merged.update(read_environment(env))
    for name, value in flags.items():
        if value is not None and value != ():
            merged[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    if isinstance(merged.get("out"), str):  # s3://BUCKET/PREFIX
        merged["bucket_url"] = merged.pop("out").rstrip("/")
    return _check(Settings(**merged))
