"""Estimates against the bytes the simulator actually serves, at its realistic image sizes.

The simulator renders images at their real dimensions (``image_scale=1``): a downsample-4
connectivity section is a few hundred kB, like the live service's (ALLEN_API.md §3).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST, ls_rows, run_subprocess

TOLERANCE = 0.25


@pytest.fixture(scope="module")
def real_sizes() -> Iterator[str]:
    """The catalogue ``demo`` serves (images at their real sizes), in a process of its own:
    rendering ~200 MB of JPEGs must not grow the test process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "crawler.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"simulator listening on (http://\S+)", line)
        assert match, line
        yield match[1]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def estimated_then_fetched(
    capsys: pytest.CaptureFixture[str], api: str, out: Path, *selection: str
) -> tuple[int, int, dict[str, int]]:
    """``plan``'s estimate, then what a worker fetched: total bytes and bytes per kind."""
    base = ["--out", str(out), "--api-base", api, *FAST]
    planned = run_subprocess("plan", *selection, *base)
    assert planned.code == 0, planned.err
    match = re.search(r"estimated .* \((\d+) bytes\)", planned.out)
    assert match, planned.out
    fetched = run_subprocess("worker", *base)
    assert fetched.code == 0, fetched.err
    kinds: dict[str, int] = {}
    rows = ls_rows(capsys, out)
    assert rows and all(row["status"] == "done" for row in rows)
    for row in rows:
        kinds[str(row["kind"])] = kinds.get(str(row["kind"]), 0) + int(str(row["size"]))
    return int(match.group(1)), sum(kinds.values()), kinds


def test_the_demo_estimate_is_within_a_quarter_of_what_it_downloads(
    real_sizes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    estimate, actual, _ = estimated_then_fetched(
        capsys, real_sizes, tmp_path / "m", "--dataset", "100141599"
    )
    assert actual > 50_000_000  # 139 connectivity sections of a few hundred kB
    assert abs(estimate - actual) <= TOLERANCE * actual, (estimate, actual)


@pytest.mark.parametrize(
    "selection",
    [
        ("--dataset", "126862385", "--image", "section,projection", "--sections", "1-30"),
        ("--dataset", "69782969", "--image", "section,expression", "--sections", "1-30"),
        ("--dataset", "69782969", "--image", "section,expression", "--quality", "85"),
        ("--dataset", "100141599", "--sections", "1-20", "--range", "none"),
        ("--atlas", "1", "--annotation", "--sections", "100-130"),
    ],
    ids=["connectivity", "ish", "ish-quality-85", "no-window", "atlas"],
)
def test_estimates_by_kind_window_and_quality(
    real_sizes: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    selection: tuple[str, ...],
) -> None:
    estimate, actual, kinds = estimated_then_fetched(capsys, real_sizes, tmp_path / "m", *selection)
    assert len(kinds) == (1 if "--range" in selection else 2), kinds
    assert abs(estimate - actual) <= TOLERANCE * actual, (estimate, actual, kinds)
