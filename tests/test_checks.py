"""The habits, enforced: ruff format, ruff check and mypy on the package must be clean."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "ruff"), "format", "--check", "crawler", "tests", "migrations"],
        [str(BIN / "ruff"), "check", "crawler", "tests", "migrations"],
        [str(BIN / "mypy")],
    ],
    ids=["ruff-format", "ruff-check", "mypy"],
)
def test_code_checks(command: list[str]) -> None:
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_package_is_listed_for_the_wheel() -> None:
    """pyproject.toml names the packages a wheel holds: one left out works in the editable
    install the tests use and is missing from ``pip install allen-mirror``."""
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "crawler").rglob("__init__.py")
    }
    assert found <= listed, f"not in [tool.setuptools] packages: {sorted(found - listed)}"
