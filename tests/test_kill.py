"""Real processes, real signals: SIGKILL at random moments, SIGINT/SIGTERM, two runs, full disk."""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.simulator import SimulatorConfig, ThreadedSimulator, expected_bytes, serve_in_thread
from tests.conftest import small_catalogue

pytestmark = pytest.mark.slow


@pytest.fixture
def slow_sim() -> Iterator[ThreadedSimulator]:
    """Latency makes a run last long enough to be interrupted mid-way."""
    with serve_in_thread(small_catalogue(30), SimulatorConfig(latency_ms=150)) as handle:
        yield handle


def command(base: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "crawler", "mirror",
        "--dataset", "100141599", "--dataset", "126862385",
        "--out", str(out), "--api-base", base,
        "--no-progress", "--log-format", "json", "--concurrency", "3", *extra,
    ]  # fmt: skip


def start(base: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(base, out, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def manifest_rows(out: Path) -> list[tuple[str, str, int | None, str | None, str | None]]:
    connection = sqlite3.connect(out / "manifest.sqlite", timeout=30)
    try:
        return connection.execute(
            "select path, status, size, sha256, claimed_by from items order by id"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # killed after the file was created, before the first migration
        raise
    finally:
        connection.close()


def assert_done_rows_are_complete(out: Path) -> int:
    """The manifest never says done for a file that is not complete on disk."""
    done = 0
    for path, status, size, sha256, _ in manifest_rows(out):
        if status == "done":
            body = (out / path).read_bytes()
            assert len(body) == size, path
            assert hashlib.sha256(body).hexdigest() == sha256, path
            assert body.endswith(b"\xff\xd9"), path
            done += 1
    return done


def wait_for_done(out: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "manifest.sqlite").exists():
            try:
                if sum(1 for row in manifest_rows(out) if row[1] == "done") >= count:
                    return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} items done after {timeout}s")


def assert_exact(sim: ThreadedSimulator, out: Path) -> None:
    rows = manifest_rows(out)
    assert rows and all(status == "done" for _, status, *_ in rows)
    connection = sqlite3.connect(out / "manifest.sqlite")
    urls = dict(connection.execute("select path, url from items").fetchall())
    connection.close()
    for path, url in urls.items():
        assert (out / path).read_bytes() == expected_bytes(sim.catalogue, url[len(sim.base_url) :])
    assert not list(out.rglob("*.part"))


def test_sigkill_at_random_moments_then_complete_byte_exact(
    slow_sim: ThreadedSimulator, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    rng = random.Random(20261121)
    done_so_far = 0
    for attempt in range(5):
        process = start(slow_sim.base_url, out)
        if attempt == 0:
            time.sleep(rng.uniform(0.2, 1.0))  # possibly during start-up or seeding
        else:
            wait_for_done(out, done_so_far + 1, timeout=60)  # mid-download, with progress
            time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        if (out / "manifest.sqlite").exists():
            done_so_far = assert_done_rows_are_complete(out)
            if done_so_far and done_so_far == len(manifest_rows(out)):
                break  # a run finished everything before its kill: nothing left to interrupt
    before = assert_done_rows_are_complete(out)
    assert before > 0, "the killed runs made progress"
    slow_sim.counters.reset()
    final = subprocess.run(
        command(slow_sim.base_url, out), capture_output=True, text=True, timeout=120
    )
    assert final.returncode == 0, final.stderr
    assert_exact(slow_sim, out)
    total = len(manifest_rows(out))
    refetched = sum(n for url, n in slow_sim.counters.by_url.items() if "image_download" in url)
    # at most what was not yet recorded done is fetched again
    assert refetched == total - before


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_stops_gracefully(
    slow_sim: ThreadedSimulator, tmp_path: Path, signum: int, code: int
) -> None:
    out = tmp_path / "m"
    process = start(slow_sim.base_url, out)
    wait_for_done(out, 3)
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == code, err
    assert time.monotonic() - sent < 8, "stops within the grace period"
    assert '"run.stopping"' in err and '"run.summary"' in err
    assert "Traceback" not in err
    rows = manifest_rows(out)
    assert all(claimed is None for *_, claimed in rows), "claims released"
    done = assert_done_rows_are_complete(out)
    assert 0 < done < len(rows)
    assert not list(out.rglob("*.part"))
    # and the next run finishes the job
    final = subprocess.run(
        command(slow_sim.base_url, out), capture_output=True, text=True, timeout=120
    )
    assert final.returncode == 0, final.stderr
    assert_exact(slow_sim, out)


def test_second_signal_exits_at_once_and_the_manifest_stays_consistent(
    tmp_path: Path,
) -> None:
    # once a few items are done, every body stalls: in-flight items cannot finish in the grace
    with serve_in_thread(small_catalogue(30), SimulatorConfig(latency_ms=30)) as sim:
        out = tmp_path / "m"
        process = start(sim.base_url, out, "--timeout", "30")
        wait_for_done(out, 2)
        sim.set_faults(fault_rate=1.0, fault_kinds=frozenset({"stall"}), stall_seconds=60)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, err
        assert time.monotonic() - sent < 2
        assert_done_rows_are_complete(out)
        sim.set_faults(fault_rate=0.0)
        final = subprocess.run(
            command(sim.base_url, out), capture_output=True, text=True, timeout=120
        )
        assert final.returncode == 0, final.stderr
        assert_exact(sim, out)


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(
    slow_sim: ThreadedSimulator, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    first = start(slow_sim.base_url, out)
    try:
        wait_for_done(out, 1)
        second = subprocess.run(
            command(slow_sim.base_url, out), capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 3
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1
        assert f"pid {first.pid}" in lines[0] and "in use by another allen-mirror run" in lines[0]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert_done_rows_are_complete(out)


def test_a_full_disk_is_a_clear_error_and_nothing_partial_is_recorded(tmp_path: Path) -> None:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "cannot mount a small tmpfs here (needs root): " + mounted.stderr.decode().strip()
        )
    try:
        with serve_in_thread(small_catalogue(30), SimulatorConfig()) as sim:
            out = mount_point / "m"
            manifest = f"sqlite:///{tmp_path / 'manifest.sqlite'}"
            run = subprocess.run(
                command(sim.base_url, out, "--manifest", manifest),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 1, run.stderr
            errors = [line for line in run.stderr.splitlines() if line.startswith("allen-mirror:")]
            assert errors == [errors[0]] and "disk full" in errors[0]
            assert "Traceback" not in run.stderr
            connection = sqlite3.connect(tmp_path / "manifest.sqlite")
            rows = connection.execute("select path, status, size, sha256 from items").fetchall()
            connection.close()
            done = [row for row in rows if row[1] == "done"]
            assert 0 < len(done) < len(rows)
            for path, _, size, sha256 in done:
                body = (out / path).read_bytes()
                assert len(body) == size and hashlib.sha256(body).hexdigest() == sha256
            assert not list(out.rglob("*.part"))
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)
