"""Workers as a fleet runs them: real subprocesses on one PostgreSQL manifest, the fixtures
that start them, and the checks that the mirror they made is exact."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crawler.manifest import Manifest, open_manifest
from crawler.manifest.models import items, workers
from crawler.simulator import SimulatorConfig, ThreadedSimulator, expected_bytes, serve_in_thread
from tests.conftest import FAST, run_cli, small_catalogue

DATA_SETS = ["--dataset", "100141599", "--dataset", "126862385"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Short waits, and a lease of two seconds so a killed worker's items come back fast."""
    path = tmp_path / "workers.toml"
    path.write_text(
        "retry_wait_initial = 0.01\nretry_wait_max = 0.2\nmanifest_flush_seconds = 0.1\n"
        "timeout = 5.0\nlease_seconds = 2.0\npoll_seconds = 0.3\n"
    )
    return path


def plan(capsys: pytest.CaptureFixture[str], sim: ThreadedSimulator, out: Path, url: str) -> None:
    result = run_cli(
        capsys, "plan", *DATA_SETS, "--out", str(out), "--manifest", url,
        "--api-base", sim.base_url, *FAST,
    )  # fmt: skip
    assert result.code == 0, result.err


Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def spawn(config: Path) -> Iterator[Spawn]:
    """Start ``worker`` processes; any still running when the test ends is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(sim: ThreadedSimulator, out: Path, url: str, *extra: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "crawler", "worker", "--out", str(out), "--manifest", url,
                "--api-base", sim.base_url, "--config", str(config), *FAST, *extra,
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        if process.stdout is not None and not process.stdout.closed:
            process.communicate(timeout=30)


def finish(process: subprocess.Popen[str], code: int = 0) -> str:
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "Traceback" not in err
    return err


def manifest_call(url: str, action: Callable[[Manifest], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        manifest = await open_manifest(url, upgrade=False)
        try:
            return await action(manifest)
        finally:
            await manifest.close()

    return asyncio.run(run())


def query(url: str, statement: Any) -> list[Any]:
    async def run(manifest: Manifest) -> list[Any]:
        async with manifest.engine.connect() as connection:
            return list((await connection.execute(statement)).all())

    return list(manifest_call(url, run))


def done_count(url: str) -> int:
    return len(query(url, select(items.c.id).where(items.c.status == "done")))


def image_urls(sim: ThreadedSimulator) -> dict[str, int]:
    return {u: n for u, n in sim.counters.by_url.items() if "image_download" in u}


def assert_mirror_is_exact(sim: ThreadedSimulator, out: Path, url: str) -> list[str]:
    rows = query(url, select(items.c.url, items.c.path, items.c.status, items.c.claimed_by))
    assert rows and all(status == "done" and holder is None for _, _, status, holder in rows)
    for item_url, path, _, _ in rows:
        ref = item_url[len(sim.base_url) :]
        assert (out / path).read_bytes() == expected_bytes(sim.catalogue, ref), path
    assert not list(out.rglob("*.part"))
    return [item_url[len(sim.base_url) :] for item_url, *_ in rows]


@contextmanager
def gate(url: str, workers_expected: int) -> Iterator[None]:
    """Hold every pending item until ``workers_expected`` workers are up, then let go at once.

    Workers find the items held by someone else and wait for them, so none of them can drain
    the queue while the others are still starting (starting Python takes a while on a busy
    machine).
    """
    manifest_call(url, lambda m: m.claim("gate", 1_000_000, timedelta(minutes=5)))
    yield
    deadline = time.monotonic() + 60
    while len(query(url, select(workers.c.id))) < workers_expected:
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    manifest_call(url, lambda m: m.release("gate"))


@pytest.fixture
def slow_sim() -> Iterator[ThreadedSimulator]:
    with serve_in_thread(small_catalogue(40), SimulatorConfig(latency_ms=60)) as handle:
        yield handle
