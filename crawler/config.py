"""Settings: one home for defaults, merged file < environment < flags into one frozen object.

The object is passed down explicitly; nothing reads global state after start-up.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from crawler.errors import UsageError

DEFAULT_API_BASE = "http://api.brain-map.org"
ENV_PREFIX = "ALLEN_MIRROR_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run may tune; the defaults are polite to a single shared server."""

    api_base: str = DEFAULT_API_BASE
    out: Path = Path("mirror")
    manifest: str | None = None  # SQLAlchemy URL; None means a SQLite file inside OUT
    downsample: int = 4
    quality: int | None = None
    include_failed: bool = False  # failed data sets and sections are skipped unless asked
    concurrency: int = 8
    rate: float = 0.0  # requests per second over every request; 0 means no cap
    retries: int = 5
    timeout: float = 30.0  # connect and idle-read timeout of one request, seconds
    retry_wait_initial: float = 1.0
    retry_wait_max: float = 60.0
    retry_after_max: float = 300.0
    retry_deadline: float = 1800.0  # give up on one item after this many seconds of retrying
    page_size: int = 2000
    manifest_batch: int = 500
    manifest_flush_seconds: float = 0.5
    fsync: bool = True
    progress: bool = True
    log_format: str = "auto"  # auto | console | json
    log_level: str = "info"
    grace_seconds: float = 5.0  # how long in-flight items may finish after the first signal

    @property
    def manifest_url(self) -> str:
        """The manifest URL as given, or the SQLite file every mirror carries by default."""
        return self.manifest or f"sqlite:///{(self.out / 'manifest.sqlite').resolve()}"


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
        if kind.startswith("Path"):
            return Path(str(value)).expanduser()
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
    for name in ("retry_wait_initial", "retry_wait_max", "retry_after_max", "retry_deadline"):
        if getattr(settings, name) < 0:
            problems.append(f"{name.replace('_', '-')} must not be negative")
    if not 1 <= settings.page_size <= 25000:
        problems.append(f"page-size must be between 1 and 25000, got {settings.page_size}")
    if settings.manifest_batch < 1:
        problems.append("manifest-batch must be at least 1")
    if settings.log_format not in _LOG_FORMATS:
        problems.append(f"log-format must be one of {', '.join(_LOG_FORMATS)}")
    if settings.log_level not in _LOG_LEVELS:
        problems.append(f"log-level must be one of {', '.join(_LOG_LEVELS)}")
    if not settings.api_base.startswith(("http://", "https://")):
        problems.append(f"api-base must be an http:// or https:// URL, got {settings.api_base!r}")
    if problems:
        raise UsageError(problems[0])
    return dataclasses.replace(settings, api_base=settings.api_base.rstrip("/"))


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
            raise UsageError(f"unknown setting {key!r} in config file {path}")
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
        if value is not None:
            merged[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    return _check(Settings(**merged))
