"""Shared fixtures: a real simulator in a background thread, and the CLI run in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from crawler.cli import main
from crawler.simulator import (
    Catalogue,
    Simulator,
    SimulatorConfig,
    ThreadedSimulator,
    serve_in_thread,
)
from tests.pg import pg_url, postgres_server  # noqa: F401  (the PostgreSQL fixtures)

REPO = Path(__file__).resolve().parents[1]

# Small, fast settings every end-to-end run gets on top of its own flags.
FAST = ["--no-progress", "--log-format", "json"]


def small_catalogue(sections: int = 8) -> Catalogue:
    """Few sections, small images: a whole data set renders in well under a second."""
    return Catalogue.build(sections_per_dataset=sections, image_scale=0.04)


@pytest.fixture
def sim() -> Iterator[ThreadedSimulator]:
    """A fault-free simulator with a small catalogue."""
    with serve_in_thread(small_catalogue(), SimulatorConfig()) as handle:
        yield handle


@pytest.fixture
def fast_config(tmp_path: Path) -> Path:
    """Retry waits short enough for tests (the policy is the same, only the clock is shorter)."""
    path = tmp_path / "fast.toml"
    path.write_text(
        "retry_wait_initial = 0.01\nretry_wait_max = 0.2\nretry_after_max = 2.0\n"
        "manifest_flush_seconds = 0.1\ntimeout = 5.0\n"
    )
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run ``allen-mirror`` in-process, as a user would type it."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def mirror_data_set(
    capsys: pytest.CaptureFixture[str],
    sim: ThreadedSimulator,
    out: Path,
    *extra: str,
    data_set: str = "100141599",
) -> Result:
    """``allen-mirror mirror --dataset ID --out OUT --api-base SIM ...`` in-process."""
    return run_cli(
        capsys, "mirror", "--dataset", data_set, "--out", str(out), "--api-base", sim.base_url,
        *extra,
    )  # fmt: skip


def run_subprocess(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """Run ``python -m crawler`` in a real subprocess."""
    completed = subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def ls_rows(capsys: pytest.CaptureFixture[str], out: Path, *extra: str) -> list[dict[str, object]]:
    result = run_cli(capsys, "ls", "--out", str(out), *extra)
    assert result.code == 0, result.err
    return [json.loads(line) for line in result.out.splitlines() if line.strip()]


def image_requests(sim: ThreadedSimulator) -> int:
    return int(sim.counters.by_route.get("image", 0))


# -- the simulator in the test's own event loop, for tests that speak HTTP to it directly ----


@pytest.fixture
def catalogue() -> Catalogue:
    """The catalogue ``served`` serves; modules that need another shape override this."""
    return small_catalogue()


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    """How ``served`` behaves (latency, faults); overridden where a module needs faults."""
    return SimulatorConfig()


@pytest.fixture
async def served(
    catalogue: Catalogue, simulator_config: SimulatorConfig
) -> AsyncIterator[Simulator]:
    """The simulator serving ``catalogue`` in this test's event loop."""
    async with Simulator(catalogue, simulator_config) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for talking to ``served`` directly."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


# The fleet fixtures (worker subprocesses on one PostgreSQL manifest), imported last: they use
# the helpers above.
from tests.fleet import config, slow_sim, spawn  # noqa: E402, F401
from tests.s3 import bucket, s3, s3_endpoint, s3_env  # noqa: E402, F401  (object storage)
