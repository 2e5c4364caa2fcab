"""Settings precedence (defaults < file < environment < flags) and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.config import Settings, load_settings
from crawler.errors import UsageError


def test_defaults() -> None:
    settings = load_settings(None, {}, environ={})
    assert settings == Settings()
    assert settings.manifest_url.endswith("/mirror/manifest.sqlite")


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('concurrency = 3\nrate = 2.5\napi-base = "http://file"\ndownsample = 2\n')
    settings = load_settings(
        config,
        {"downsample": "5", "concurrency": None},
        environ={"ALLEN_API_BASE": "http://env/", "ALLEN_MIRROR_RATE": "7"},
    )
    assert settings.concurrency == 3
    assert settings.rate == 7.0
    assert settings.api_base == "http://env"
    assert settings.downsample == 5


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"downsample": "-1"}, "downsample"),
        ({"quality": "101"}, "quality"),
        ({"concurrency": "0"}, "concurrency"),
        ({"rate": "-3"}, "rate"),
        ({"timeout": "abc"}, "timeout"),
        ({"api_base": "ftp://x"}, "api-base"),
        ({"log_format": "xml"}, "log-format"),
    ],
)
def test_invalid_values_name_the_setting(flags: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_settings(None, flags, environ={})


def test_unknown_key_and_bad_toml(tmp_path: Path) -> None:
    unknown = tmp_path / "u.toml"
    unknown.write_text("speed = 3\n")
    with pytest.raises(UsageError, match="unknown setting 'speed'"):
        load_settings(unknown, {}, environ={})
    broken = tmp_path / "b.toml"
    broken.write_text("concurrency = = 3\n")
    with pytest.raises(UsageError, match="invalid config file"):
        load_settings(broken, {}, environ={})
    with pytest.raises(UsageError, match="not found"):
        load_settings(tmp_path / "missing.toml", {}, environ={})


def test_default_config_file_is_valid() -> None:
    shipped = Path(__file__).resolve().parents[1] / "config" / "default.toml"
    assert load_settings(shipped, {}, environ={}) == Settings()
