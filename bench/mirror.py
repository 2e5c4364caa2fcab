"""allen-mirror as its users run it: the real CLI in a subprocess, its summary read from the log."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import PYTHON, REPO, BenchError, Measured, crawler, run_measured

QUIET = ("--no-progress", "--log-format", "json")


@dataclass(frozen=True)
class MirrorRun:
    """One `mirror` process: what it cost and what it said in its run.summary."""

    measured: Measured
    summary: dict[str, Any]

    @property
    def seconds(self) -> float:
        """The run's own wall time (manifest open to close, seeding and fetching included)."""
        return float(self.summary["seconds"])


def selection_args(api_base: str, out: Path | str, data_sets: Sequence[int]) -> list[str]:
    args = ["--api-base", api_base, "--out", str(out)]
    for data_set_id in data_sets:
        args += ["--dataset", str(data_set_id)]
    return args


def parse_summary(stderr: str) -> dict[str, Any]:
    """The run.summary event among the JSON log lines."""
    for line in reversed(stderr.splitlines()):
        if '"run.summary"' in line:
            event: dict[str, Any] = json.loads(line)
            return event
    raise BenchError(f"no run.summary in the mirror's log:\n{stderr[-2000:]}")


def run_mirror(
    api_base: str,
    out: Path | str,  # a directory, or s3://BUCKET/PREFIX
    data_sets: Sequence[int],
    *,
    concurrency: int,
    logs: Path,
    timeout: float,
    extra: Sequence[str] = (),
    watch: Callable[[subprocess.Popen[bytes], float], bool] | None = None,
    expect_exit: Sequence[int] = (0,),
    env: dict[str, str] | None = None,
    need_summary: bool = True,
) -> MirrorRun:
    """`python -m crawler mirror ...` into a fresh OUT; fails loudly unless it exits as expected."""
    argv = crawler(
        "mirror",
        *selection_args(api_base, out, data_sets),
        "--concurrency",
        str(concurrency),
        *extra,
        *QUIET,
    )
    measured = run_measured(
        argv, logs=logs, timeout=timeout, watch=watch, env={**os.environ, **(env or {})}
    )
    if measured.returncode not in expect_exit:
        raise BenchError(
            f"mirror exited {measured.returncode}; see {logs}:\n{measured.stderr[-2000:]}"
        )
    try:
        summary = parse_summary(measured.stderr)
    except BenchError:
        if need_summary:
            raise
        summary = {}
    return MirrorRun(measured, summary)


def plan(
    api_base: str,
    out: Path,
    data_sets: Sequence[int],
    *,
    logs: Path,
    timeout: float,
    extra: Sequence[str] = (),
) -> Measured:
    """`python -m crawler plan ...`."""
    argv = crawler("plan", *selection_args(api_base, out, data_sets), *extra, *QUIET)
    measured = run_measured(argv, logs=logs, timeout=timeout)
    if measured.returncode != 0:
        raise BenchError(f"plan exited {measured.returncode}:\n{measured.stderr[-2000:]}")
    return measured


def list_items(out: Path, *, timeout: float) -> list[dict[str, Any]]:
    """`python -m crawler ls --out OUT`: every item with its url and path."""
    result = subprocess.run(
        crawler("ls", "--out", str(out)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"ls exited {result.returncode}: {result.stderr[-2000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def has_option(command: str, option: str) -> bool:
    """Whether ``allen-mirror <command> --help`` lists ``option`` (feature detection)."""
    result = subprocess.run(
        [PYTHON, "-m", "crawler", command, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return option in result.stdout.split()
