"""Forgiving selections: unknown ids skipped on request, a selection in the config file,
unknown config keys named, and --sections that matches nothing said out loud."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.simulator import ThreadedSimulator
from tests.conftest import FAST, image_requests, ls_rows, run_cli

DATA_SET = "100141599"
UNKNOWN = "999999991"


def test_ignore_missing_reports_unknown_ids_and_fetches_the_rest(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{DATA_SET}\n{UNKNOWN}  # a typo\n")
    args = ["--ids-file", str(ids), "--sections", "1-3", "--api-base", sim.base_url]
    strict = run_cli(capsys, "mirror", *args, "--out", str(tmp_path / "a"), *FAST)
    assert strict.code == 2
    assert f"no SectionDataSet with id {UNKNOWN}" in strict.err and "--ignore-missing" in strict.err
    assert image_requests(sim) == 0
    out = tmp_path / "b"
    forgiving = run_cli(
        capsys, "mirror", *args, "--out", str(out), "--ignore-missing", "--no-progress",
        "--log-format", "console",
    )  # fmt: skip
    assert forgiving.code == 0, forgiving.err
    assert "selection.unknown_data_sets" in forgiving.err and UNKNOWN in forgiving.err
    assert f"skipped 1 unknown data set id(s) (--ignore-missing): {UNKNOWN}" in forgiving.err
    rows = ls_rows(capsys, out)
    assert len(rows) == 3 and all(row["status"] == "done" for row in rows)


def test_a_nightly_job_is_a_config_file(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    job = tmp_path / "job.toml"
    job.write_text(
        f'datasets = [{DATA_SET}, {UNKNOWN}]\nsections = "1-2"\nignore_missing = true\n'
        f'out = "{out}"\napi_base = "{sim.base_url}"\nprogress = false\nlog_format = "json"\n'
    )
    synced = run_cli(capsys, "sync", "--config", str(job))
    assert synced.code == 0, synced.err
    rows = ls_rows(capsys, out)
    assert len(rows) == 2 and all(row["status"] == "done" for row in rows)
    # A flag replaces its key: --sections 1-4 widens the job's 1-2.
    wider = run_cli(capsys, "sync", "--config", str(job), "--sections", "1-4")
    assert wider.code == 0, wider.err
    assert len(ls_rows(capsys, out)) == 4
    bad = tmp_path / "bad.toml"
    bad.write_text('criteria = ["products[id$eq5]::rma"]\n')
    refused = run_cli(capsys, "plan", "--config", str(bad), "--out", str(tmp_path / "n"))
    assert refused.code == 2 and "invalid --criteria" in refused.err


def test_an_unknown_config_key_is_named_even_without_a_selection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.toml"
    job.write_text(f"dataset = [{DATA_SET}]\n")
    for command in ("sync", "mirror", "plan"):
        result = run_cli(capsys, command, "--config", str(job), "--out", str(tmp_path / "m"))
        assert result.code == 2
        assert result.err.strip() == (
            f"allen-mirror: error: unknown setting 'dataset' in config file {job} "
            "(did you mean 'datasets'?)"
        )
    empty = tmp_path / "empty.toml"
    empty.write_text("concurrency = 2\n")
    nothing = run_cli(capsys, "sync", "--config", str(empty), "--out", str(tmp_path / "m"))
    assert nothing.code == 2 and "nothing selected" in nothing.err and "--config" in nothing.err


def test_sections_that_match_nothing_are_a_warning(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(
        capsys, "mirror", "--dataset", DATA_SET, "--sections", "500-600", "--out",
        str(tmp_path / "m"), "--api-base", sim.base_url, *FAST,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert '"event": "plan.sections_matched_nothing"' in result.err
    assert '"sections": "500-600"' in result.err and '"section_numbers": "1-8"' in result.err
    assert '"level": "warning"' in result.err
    assert image_requests(sim) == 0
