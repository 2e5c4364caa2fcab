"""Prometheus metrics: scraped from a real run against the simulator, and the textfile it leaves."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crawler.errors import ContentError, HTTPStatusError, TransportError
from crawler.retry import reason_of
from crawler.simulator import Catalogue, SimulatorConfig, ThreadedSimulator, serve_in_thread
from tests.conftest import FAST, REPO, ls_rows, run_cli

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def total(found: Samples, name: str) -> float:
    return sum(v for (n, _), v in found.items() if n == name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def slow_faulty_sim() -> Iterator[ThreadedSimulator]:
    """Slow enough to scrape mid-run, with 500s to retry."""
    config = SimulatorConfig(
        latency_ms=60, fault_rate=0.15, fault_kinds=frozenset({"http_500"}), seed=3
    )
    catalogue = Catalogue.build(sections_per_dataset=40, image_scale=0.04)
    with serve_in_thread(catalogue, config) as handle:
        yield handle


def test_reason_of_is_a_short_bounded_word() -> None:
    assert reason_of(HTTPStatusError(503)) == "http_503"
    assert reason_of(TransportError("server closed", reason="disconnected")) == "disconnected"
    assert reason_of(TransportError("x")) == "connection"
    assert reason_of(ContentError("html outage page")) == "bad_content"


def test_a_run_is_scraped_while_it_runs_and_leaves_a_textfile(
    slow_faulty_sim: ThreadedSimulator,
    fast_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim, out, prom = slow_faulty_sim, tmp_path / "m", tmp_path / "allen.prom"
    port = free_port()
    command = [
        sys.executable, "-m", "crawler", "mirror", "--dataset", "100141599", "--out", str(out),
        "--api-base", sim.base_url, "--concurrency", "2", "--config", str(fast_config),
        "--metrics-port", str(port), "--metrics-file", str(prom), *FAST,
    ]  # fmt: skip
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    during: Samples = {}
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                found = samples(answer.read().decode())
        except OSError:  # not listening yet
            time.sleep(0.05)
            continue
        done = found.get(("allen_mirror_items_total", (("outcome", "done"),)), 0)
        if done >= 3 and found.get(("allen_mirror_queue_depth", ()), 0) > 0:
            during = found
            break
        time.sleep(0.05)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert during, "no scrape saw items done while the run lasted"
    assert value(during, "allen_mirror_run_info", command="mirror", version="0.1.0") == 1
    assert value(during, "allen_mirror_items_total", outcome="done") < 39  # mid-run
    assert value(during, "allen_mirror_queue_depth") > 0
    assert value(during, "allen_mirror_requests_total") > 0

    final = samples(prom.read_text())
    rows = ls_rows(capsys, out)
    done = [row for row in rows if row["status"] == "done"]
    assert value(final, "allen_mirror_items_total", outcome="done") == len(done) > 30
    assert value(final, "allen_mirror_items_total", outcome="failed") == 0
    on_disk = sum((out / str(row["path"])).stat().st_size for row in done)
    assert value(final, "allen_mirror_bytes_total") == on_disk
    assert value(final, "allen_mirror_requests_total") == sim.counters.requests_total
    assert value(final, "allen_mirror_request_duration_seconds_count") == (
        sim.counters.requests_total
    )
    faults = sum(sim.counters.faults.values())
    assert faults > 0
    assert value(final, "allen_mirror_retries_total", reason="http_500") == faults
    assert value(final, "allen_mirror_queue_depth") == 0
    assert value(final, "allen_mirror_run_exit_code") == 0
    assert value(final, "allen_mirror_run_end_time_seconds") >= value(
        final, "allen_mirror_run_start_time_seconds"
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("allen.prom.")]  # no temp left


def test_a_worker_writes_its_metrics_and_a_failed_run_says_so(
    sim: ThreadedSimulator, fast_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, prom = tmp_path / "m", tmp_path / "worker.prom"
    base = ["--out", str(out), "--api-base", sim.base_url, "--config", str(fast_config), *FAST]
    assert run_cli(capsys, "plan", "--dataset", "100141599", *base).code == 0
    worker = run_cli(capsys, "worker", *base, "--metrics-file", str(prom))
    assert worker.code == 0, worker.err
    final = samples(prom.read_text())
    assert value(final, "allen_mirror_run_info", command="worker", version="0.1.0") == 1
    done = [row for row in ls_rows(capsys, out) if row["status"] == "done"]
    assert value(final, "allen_mirror_items_total", outcome="done") == len(done) > 0

    unreachable = run_cli(
        capsys, "sync", "--dataset", "100141599", "--out", str(tmp_path / "n"),
        "--api-base", f"http://127.0.0.1:{free_port()}", "--metrics-file", str(prom), *FAST,
    )  # fmt: skip
    assert unreachable.code == 1
    final = samples(prom.read_text())
    assert value(final, "allen_mirror_run_exit_code") == 1
    assert value(final, "allen_mirror_run_info", command="sync", version="0.1.0") == 1


def test_metrics_mistakes_are_one_line(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["mirror", "--dataset", "100141599", "--out", str(tmp_path / "m")]
    base += ["--api-base", sim.base_url, *FAST]
    missing = run_cli(capsys, *base, "--metrics-file", str(tmp_path / "nowhere" / "a.prom"))
    assert missing.code == 2
    assert "directory" in missing.err and "does not exist" in missing.err
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        busy = run_cli(capsys, *base, "--metrics-port", str(taken.getsockname()[1]))
    assert busy.code == 2
    assert busy.err.startswith("allen-mirror: error: cannot serve metrics on port")
    assert len(busy.err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()  # refused before the run started
