"""Reliability against the simulator's faults: exact bytes, bounded stalls, failures recorded."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path

import pytest

from crawler.simulator import FAULT_KINDS, SimulatorConfig, expected_bytes, serve_in_thread
from tests.conftest import FAST, ls_rows, run_cli, small_catalogue

DATA_SETS = ("100141599", "126862385")


def args(base: str, out: Path, config: Path, *extra: str) -> list[str]:
    selection = [part for ds in DATA_SETS for part in ("--dataset", ds)]
    return [
        "mirror",
        *selection,
        "--out",
        str(out),
        "--api-base",
        base,
        "--config",
        str(config),
        *FAST,
        *extra,
    ]


def assert_mirror_exact(sim, out: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every done row's file is on disk with its size and sha256, byte-identical to the server's."""
    rows = ls_rows(capsys, out)
    for row in rows:
        if row["status"] != "done":
            continue
        body = (out / str(row["path"])).read_bytes()
        assert len(body) == row["size"]
        assert hashlib.sha256(body).hexdigest() == row["sha256"]
        ref = str(row["url"])[len(sim.base_url) :]
        assert body == expected_bytes(sim.catalogue, ref), row["path"]
    assert not list(out.rglob("*.part"))
    return rows


def test_fifteen_percent_faults_of_every_kind_still_give_an_exact_mirror(
    tmp_path: Path,
    fast_config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = SimulatorConfig(
        fault_rate=0.15, fault_kinds=FAULT_KINDS, stall_seconds=30, retry_after_seconds=1, seed=7
    )
    with serve_in_thread(small_catalogue(40), config) as sim:
        out = tmp_path / "m"
        result = run_cli(
            capsys, *args(sim.base_url, out, fast_config, "--timeout", "1", "--retries", "8")
        )
        assert result.code == 0, result.err
        rows = assert_mirror_exact(sim, out, capsys)
        assert rows and all(row["status"] == "done" for row in rows)
        injected = set(sim.counters.faults)
        # the run really met a wide spread of faults, RMA and images alike
        assert len(injected) >= 6, injected
        # each retry line names the URL and why, in words, not library internals
        events = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")]
        retries = [e for e in events if e.get("event") == "request.retry"]
        assert retries
        for retry in retries:
            assert str(retry["url"]).startswith(sim.base_url) and retry["reason"], retry
            assert not {"args", "callable"} & set(retry), retry
        assert sim.counters.by_status.get(200, 0) > 0


def test_stalled_bodies_are_cut_by_the_idle_timeout(
    tmp_path: Path, fast_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = SimulatorConfig(
        fault_rate=0.3, fault_kinds=frozenset({"stall"}), stall_seconds=120, seed=3
    )
    with serve_in_thread(small_catalogue(8), config) as sim:
        out = tmp_path / "m"
        started = time.monotonic()
        result = run_cli(
            capsys, *args(sim.base_url, out, fast_config, "--timeout", "1", "--retries", "10")
        )
        elapsed = time.monotonic() - started
        assert result.code == 0, result.err
        assert sim.counters.faults["stall"] > 0
        assert elapsed < 60, "bounded by the 1 s timeout, not by the 120 s stall"
        assert_mirror_exact(sim, out, capsys)


def test_permanent_failures_are_recorded_listed_and_retried_next_run(
    tmp_path: Path, fast_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = small_catalogue(6)
    images = [
        i
        for i in catalogue.records("SectionImage")
        if i["data_set_id"] == 100141599 and not i["failed"]
    ]
    broken = {
        images[0]["id"]: "http_500",
        images[1]["id"]: "http_404",
        images[2]["id"]: "corrupt_jpeg",
    }
    with serve_in_thread(catalogue, SimulatorConfig(permanent_failures=broken)) as sim:
        out = tmp_path / "m"
        result = run_cli(capsys, *args(sim.base_url, out, fast_config, "--retries", "2"))
        assert result.code == 1
        assert "3 item(s) failed after their retries" in result.err
        for image_id in broken:
            assert f"section_image_download/{image_id}?" in result.err
        failed = ls_rows(capsys, out, "--status", "failed")
        assert {row["image_id"] for row in failed} == set(broken)
        by_id = {row["image_id"]: row for row in failed}
        assert (
            by_id[images[0]["id"]]["http_status"] == 500 and by_id[images[0]["id"]]["attempts"] == 3
        )
        assert (
            by_id[images[1]["id"]]["http_status"] == 404 and by_id[images[1]["id"]]["attempts"] == 1
        )
        assert "JPEG" in str(by_id[images[2]["id"]]["error"])
        for row in failed:
            assert not (out / str(row["path"])).exists()
        rows = assert_mirror_exact(sim, out, capsys)
        assert sum(row["status"] == "done" for row in rows) == len(rows) - 3

        # the next run retries exactly the failed ones; once the server is fixed they complete
        sim.config.permanent_failures = {}
        sim.counters.reset()
        again = run_cli(capsys, *args(sim.base_url, out, fast_config))
        assert again.code == 0, again.err
        fetched = {u for u in sim.counters.by_url if "section_image_download" in u}
        assert len(fetched) == 3
        assert all(row["status"] == "done" for row in assert_mirror_exact(sim, out, capsys))


def test_retry_after_is_honoured_and_retries_respect_the_concurrency_cap(
    tmp_path: Path, fast_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = SimulatorConfig(
        fault_rate=0.4,
        fault_kinds=frozenset({"http_429_retry_after", "http_503_retry_after"}),
        retry_after_seconds=1,
        latency_ms=20,
        seed=11,
    )
    with serve_in_thread(small_catalogue(6), config) as sim:
        out = tmp_path / "m"
        result = run_cli(
            capsys, *args(sim.base_url, out, fast_config, "--concurrency", "2", "--retries", "8")
        )
        assert result.code == 0, result.err
        assert sim.counters.max_in_flight <= 2
        throttled = sum(sim.counters.faults.values())
        assert throttled > 0
        gaps = [
            later - earlier
            for times in sim.counters.times.values()
            for earlier, later in itertools.pairwise(times)
        ]
        assert gaps and min(gaps) >= 0.95, "a retry came sooner than Retry-After allowed"


def test_backoff_is_capped_and_attempts_bounded_during_an_outage(
    tmp_path: Path, fast_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = small_catalogue(4)
    with serve_in_thread(catalogue, SimulatorConfig()) as sim:
        out = tmp_path / "m"
        assert (
            run_cli(
                capsys,
                "plan",
                "--dataset",
                "100141599",
                "--out",
                str(out),
                "--api-base",
                sim.base_url,
                *FAST,
            ).code
            == 0
        )
        items = len(ls_rows(capsys, out))
        sim.set_faults(fault_rate=1.0, fault_kinds=frozenset({"http_502"}))
        sim.counters.reset()
        started = time.monotonic()
        result = run_cli(
            capsys, *args(sim.base_url, out, fast_config, "--retries", "3", "--concurrency", "2")
        )
        elapsed = time.monotonic() - started
        assert result.code == 1
        # seeding fails first: the RMA query is retried 3 times, then the run ends in one line
        assert sim.counters.requests_total <= 4 * (1 + items)
        assert elapsed < 10
        assert result.err.strip().splitlines()[-1].startswith("allen-mirror: error: the API failed")


def test_unreachable_api_is_one_line_exit_1(
    tmp_path: Path, fast_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(
        capsys,
        *args(
            "http://127.0.0.1:9", tmp_path / "m", fast_config, "--retries", "1", "--timeout", "1"
        ),
    )
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if line.startswith("allen-mirror:")]
    assert len(errors) == 1 and "cannot connect" in errors[0]
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "abc"], "not a data set id"),
        (["--dataset", "123456789"], "no SectionDataSet with id 123456789"),
        (["--dataset", "100141599", "--downsample", "-1"], "downsample"),
        (["--dataset", "100141599", "--quality", "101"], "quality"),
        (["--dataset", "100141599", "--concurrency", "many"], "concurrency"),
        (["--dataset", "100141599", "--frobnicate"], "No such option"),
        (
            ["--dataset", "100141599", "--manifest", "mysql://h/db"],
            "unsupported manifest URL scheme",
        ),
        (["--dataset", "100141599", "--config", "/nonexistent.toml"], "config file not found"),
        ([], "nothing selected"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    result = run_cli(
        capsys, "mirror", "--out", str(tmp_path / "m"), "--api-base", sim.base_url, *FAST, *extra
    )
    assert result.code == 2, result.err
    errors = [line for line in result.err.splitlines() if line.strip()]
    assert len(errors) == 1 and message in errors[0], errors
    assert errors[0].startswith("allen-mirror: error: ")


def test_invalid_config_file_is_exit_2(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("concurrency = 'lots'\n")
    result = run_cli(
        capsys,
        "mirror",
        "--dataset",
        "100141599",
        "--out",
        str(tmp_path / "m"),
        "--config",
        str(bad),
        *FAST,
    )
    assert result.code == 2
    assert result.err.count("\n") == 1 and "concurrency" in result.err


def test_output_path_that_is_a_file_is_exit_2(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli(
        capsys,
        "mirror",
        "--dataset",
        "100141599",
        "--out",
        str(blocker),
        "--api-base",
        sim.base_url,
        *FAST,
    )
    assert result.code == 2
    assert "output" in result.err and result.err.count("\n") == 1


def test_summary_event_is_json(sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(
        capsys,
        "mirror",
        "--dataset",
        "100141599",
        "--out",
        str(tmp_path / "m"),
        "--api-base",
        sim.base_url,
        *FAST,
    )
    summary = [json.loads(line) for line in result.err.splitlines() if "run.summary" in line]
    assert len(summary) == 1 and summary[0]["failed"] == 0 and summary[0]["done"] > 0
