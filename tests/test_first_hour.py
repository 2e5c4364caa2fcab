"""The first hour: a readable end of run, and dry runs that write nothing."""

from __future__ import annotations

import json
import re
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crawler.cli.summary import human_bytes, summary_lines
from crawler.session import RunReport
from crawler.simulator import ThreadedSimulator
from tests.conftest import FAST, mirror_data_set, run_cli


def test_the_summary_says_what_was_done_where_and_how_to_resume() -> None:
    report = RunReport(
        command="mirror",
        done=12,
        failed=1,
        skipped_failed=2,
        bytes=3_500_000,
        seconds=2.0,
        requests=15,
        retries=2,
        remaining=7,
        interrupted_by=int(signal.SIGINT),
    )
    lines = summary_lines(report, "/data/allen")
    assert lines[0] == "mirror: 12 downloaded, 1 failed, 2 skipped (marked failed by the API)"
    assert "3.5 MB in 2.0 s (1.8 MB/s, 15 requests, 2 retries)" in lines[1]
    assert lines[2] == "  mirror: /data/allen"
    assert "SIGINT: 7 item(s) still to fetch; run the same command again to resume" in lines[3]
    synced = summary_lines(
        RunReport(command="sync", new_items=3, changed=1, removed=2, pruned=2, unchanged=9), "m"
    )
    assert "3 new, 1 changed, 2 removed (2 deleted), 9 unchanged" in synced[1]


def test_a_terminal_gets_lines_and_json_logs_keep_the_event(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    console = mirror_data_set(
        capsys, sim, tmp_path / "a", "--sections", "1-3", "--no-progress", "--log-format", "console"
    )
    assert console.code == 0, console.err
    assert "mirror: 3 downloaded, 0 failed" in console.err
    assert f"mirror: {tmp_path / 'a'}" in console.err
    assert "run.summary" not in console.err
    json_run = mirror_data_set(capsys, sim, tmp_path / "b", "--sections", "1-3", *FAST)
    assert '"event": "run.summary"' in json_run.err and '"remaining": 0' in json_run.err


def test_a_dry_run_writes_nothing_and_leaves_out_what_is_done(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    args = ["--dataset", "100141599", "--out", str(out), "--api-base", sim.base_url]
    first = run_cli(capsys, "mirror", *args, "--sections", "1-5", "--dry-run", *FAST)
    assert first.code == 0, first.err
    assert "would fetch 5 item(s)" in first.out and "by kind: section 5" in first.out
    assert "e.g. 100141599/section/ds4/0001_" in first.out
    assert not out.exists()  # no directory, lock, manifest or dataset.json
    images = sim.counters.by_route.get("image", 0)
    assert run_cli(capsys, "mirror", *args, "--sections", "1-2", *FAST).code == 0
    written = file_times(out)
    again = run_cli(capsys, "sync", *args, "--sections", "1-5", "--dry-run", *FAST)
    assert again.code == 0, again.err
    assert "would fetch 3 item(s)" in again.out and "2 already done" in again.out
    assert sim.counters.by_route.get("image", 0) == images + 2  # the dry runs fetched nothing
    assert sorted(p.name for p in out.iterdir()) == [
        ".allen-mirror.lock",
        ".reports",
        ".seeding-pages.json",
        "100141599",
        "manifest.sqlite",
    ]
    assert file_times(out) == written, "the dry run wrote no file"


def file_times(out: Path) -> dict[str, int]:
    """Every file under ``out`` but the manifest's (a dry run reads it), with its mtime."""
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith("manifest.sqlite")
    }


def test_a_mistyped_option_suggests_the_closest_first(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "mirror", "--datset", "100141599")
    assert result.code == 2
    assert result.err.startswith(
        "allen-mirror: error: No such option: --datset (did you mean --dataset"
    )


def test_numeric_options_say_their_type_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    help_text = " ".join(run_cli(capsys, "mirror", "--help").out.split())
    for option, kind in (
        ("--concurrency", "INTEGER"),
        ("--rate", "FLOAT"),
        ("--downsample", "INTEGER"),
    ):
        assert f"{option} {kind}" in help_text
    assert "Examples:" in help_text


def test_an_api_base_ending_in_api_v2_gets_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "plan", "--dataset", "1", "--api-base", "http://host.test/api/v2/")
    assert result.code == 2
    assert "ends with /api/v2, which allen-mirror adds itself: use 'http://host.test'" in result.err


def test_an_unknown_host_fails_at_once_and_leaves_no_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    args = [
        "--dataset",
        "100141599",
        "--out",
        str(out),
        "--api-base",
        "http://no-such-host.invalid",
    ]
    result = run_cli(capsys, "mirror", *args, *FAST)
    assert result.code == 1
    assert "cannot resolve host no-such-host.invalid" in result.err
    assert not (out / "manifest.sqlite").exists()  # nothing was planned: nothing to keep
    assert "request.retry" not in result.err  # a name that does not resolve is not asked again


def test_until_the_server_answered_once_retries_end_within_seconds() -> None:
    from crawler.client import FIRST_CONTACT_SECONDS, first_contact
    from crawler.errors import TransportError
    from crawler.retry import RetryPolicy, next_wait

    policy = first_contact(RetryPolicy(retries=100, wait_initial=1.0, wait_max=60.0))
    refused = TransportError("cannot connect to 127.0.0.1:9")
    waited, attempts = 0.0, 0
    while (wait := next_wait(policy, refused, attempts + 1, waited)) is not None:
        waited, attempts = waited + wait, attempts + 1
    assert 0 < waited <= FIRST_CONTACT_SECONDS <= 10
    unresolved = TransportError("cannot resolve host x.invalid", unresolved=True)
    assert next_wait(policy, unresolved, 1, 0.0) is None
    assert next_wait(RetryPolicy(), unresolved, 1, 0.0) is not None  # later: an outage, waited for


def test_history_says_no_runs_yet_and_base_needs_yes(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    assert run_cli(capsys, "db", "upgrade", "--out", str(out)).code == 0
    assert run_cli(capsys, "history", "--out", str(out)).out == "no runs yet\n"
    planned = run_cli(capsys, "plan", "--dataset", "100141599", "--out", str(out),
                      "--api-base", sim.base_url, *FAST)  # fmt: skip
    assert planned.code == 0, planned.err
    refused = run_cli(capsys, "db", "downgrade", "base", "--out", str(out))
    assert refused.code == 2 and "drops every table of the manifest: add --yes" in refused.err
    assert run_cli(capsys, "ls", "--out", str(out)).out.count("\n") > 0  # nothing was dropped
    dropped = run_cli(capsys, "db", "downgrade", "base", "--yes", "--out", str(out))
    assert dropped.code == 0, dropped.err
    assert run_cli(capsys, "db", "current", "--out", str(out)).out.startswith("none")


def test_history_records_plan_and_worker_runs_in_utc(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    base = ["--out", str(out), "--api-base", sim.base_url, *FAST]
    assert run_cli(capsys, "plan", "--dataset", "100141599", "--sections", "1-3", *base).code == 0
    assert run_cli(capsys, "worker", *base).code == 0
    runs = [
        json.loads(line)
        for line in run_cli(capsys, "history", "--out", str(out), "--json").out.splitlines()
    ]
    assert [r["command"] for r in runs] == ["worker", "plan"]
    assert runs[1]["counts"]["items_planned"] == 3 and runs[0]["counts"]["downloaded"] == 3
    assert all(r["outcome"] == "ok" for r in runs)
    for run in runs:
        for name in ("started_at", "finished_at"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run[name]), run[name]
        started = datetime.fromisoformat(run["started_at"].replace("Z", "+00:00"))
        assert abs((datetime.now(UTC) - started).total_seconds()) < 60  # UTC, not local time
    human = run_cli(capsys, "history", "--out", str(out)).out.splitlines()
    assert "worker" in human[0] and "3 downloaded" in human[0] and runs[0]["started_at"] in human[0]
    assert "plan" in human[1] and "3 items_planned" in human[1]


def test_status_speaks_in_human_units_and_gives_the_live_rate(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crawler.listing import live_rate
    from crawler.manifest.base import Tally

    now = datetime(2026, 1, 1, 12, 0, 0)
    assert live_rate(Tally(0, 0), None, now)["items_per_s"] == 0
    # 262 done over the 20 s since the oldest of them: 13.1 items/s, not 262/60
    assert live_rate(Tally(262, 2_620_000), now - timedelta(seconds=20), now)["items_per_s"] == 13.1
    assert live_rate(Tally(50, 0), now - timedelta(seconds=600), now)["items_per_s"] == 0.83
    assert live_rate(Tally(8, 0), now, now)["items_per_s"] == 8  # one batch: over one second

    out = tmp_path / "m"
    assert mirror_data_set(capsys, sim, out, *FAST).code == 0
    document = json.loads(run_cli(capsys, "status", "--out", str(out), "--json").out)
    done = document["counts"]["done"]
    assert document["recent"]["items"] == done and document["recent"]["items_per_s"] > 0
    human = run_cli(capsys, "status", "--out", str(out)).out
    size = human_bytes(document["bytes"])
    assert f"; {size} on disk" in human and size.endswith(("kB", "MB"))
    assert re.search(
        rf"now: \d+\.\d items/s, [\d.]+ [kM]?B/s \({done} done in the last 60 s\)", human
    )
    assert re.search(r"data set 100141599: .*; [\d.]+ [kM]B$", human, re.M)
