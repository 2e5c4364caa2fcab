"""The first hour: a readable end of run, and dry runs that write nothing."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from crawler.cli.summary import summary_lines
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
    again = run_cli(capsys, "sync", *args, "--sections", "1-5", "--dry-run", *FAST)
    assert again.code == 0, again.err
    assert "would fetch 3 item(s)" in again.out and "2 already done" in again.out
    assert sim.counters.by_route.get("image", 0) == images + 2  # the dry runs fetched nothing
    assert sorted(p.name for p in out.iterdir()) == [
        ".allen-mirror.lock",
        ".reports",
        "100141599",
        "manifest.sqlite",
    ]


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
