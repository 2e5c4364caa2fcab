"""Nightly sync, verify and reports: mutate the simulator between runs and check exact numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crawler.simulator import expected_bytes
from tests.conftest import FAST, ls_rows, run_cli

DATA_SET = 100141599


def sync_args(base: str, out: Path, *extra: str) -> list[str]:
    return [
        "sync",
        "--dataset",
        str(DATA_SET),
        "--out",
        str(out),
        "--api-base",
        base,
        *FAST,
        *extra,
    ]


def mirror(sim, out: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    args = [
        "mirror",
        "--dataset",
        str(DATA_SET),
        "--out",
        str(out),
        "--api-base",
        sim.base_url,
        *FAST,
    ]
    result = run_cli(capsys, *args)
    assert result.code == 0, result.err


def latest_report(out: Path, command: str) -> dict[str, object]:
    reports = sorted((out / ".reports").glob(f"*-{command}.json"))
    assert reports, f"no {command} report"
    return json.loads(reports[-1].read_text())  # type: ignore[no-any-return]


def image_downloads(sim) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {u: n for u, n in sim.counters.by_url.items() if "image_download" in u}


def test_sync_fetches_new_flags_removed_and_costs_nothing_for_unchanged(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    mirror(sim, out, capsys)
    before = {str(r["image_id"]): r for r in ls_rows(capsys, out)}

    added = [sim.catalogue.add_section(DATA_SET)["id"] for _ in range(2)]
    gone = sorted(before)[:1]
    sim.catalogue.remove_section(int(gone[0]))
    sim.counters.reset()

    result = run_cli(capsys, *sync_args(sim.base_url, out))
    assert result.code == 0, result.err
    fetched = image_downloads(sim)
    assert sorted(int(u.split("/")[-1].split("?")[0]) for u in fetched) == sorted(added)
    rows = {str(r["image_id"]): r for r in ls_rows(capsys, out)}
    assert rows[gone[0]]["status"] == "removed"
    assert (out / str(rows[gone[0]]["path"])).exists(), "files are kept without --prune"
    report = latest_report(out, "sync")
    counts = report["counts"]
    assert isinstance(counts, dict)
    assert counts["new"] == 2 and counts["downloaded"] == 2 and counts["removed"] == 1
    assert counts["unchanged"] == len(before) - 1  # the removed one is not "unchanged"
    assert report["exit_code"] == 0 and report["outcome"] == "ok"

    # a second sync with nothing new costs zero image requests
    sim.counters.reset()
    assert run_cli(capsys, *sync_args(sim.base_url, out)).code == 0
    assert image_downloads(sim) == {}
    assert latest_report(out, "sync")["counts"]["removed"] == 0  # type: ignore[index]


def test_sync_prune_deletes_and_records(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    mirror(sim, out, capsys)
    victim = ls_rows(capsys, out)[0]
    sim.catalogue.remove_section(int(str(victim["image_id"])))
    result = run_cli(capsys, *sync_args(sim.base_url, out, "--prune"))
    assert result.code == 0, result.err
    row = next(r for r in ls_rows(capsys, out) if r["image_id"] == victim["image_id"])
    assert row["status"] == "removed" and "deleted" in str(row["error"])
    assert not (out / str(victim["path"])).exists()
    assert latest_report(out, "sync")["counts"]["pruned"] == 1  # type: ignore[index]


def test_recheck_finds_exactly_the_changed_images(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    mirror(sim, out, capsys)
    rows = ls_rows(capsys, out)
    changed = [int(str(r["image_id"])) for r in rows[:2]]
    for image_id in changed:
        sim.catalogue.change_image(image_id)
    report_path = tmp_path / "nightly.json"
    result = run_cli(
        capsys, *sync_args(sim.base_url, out, "--recheck", "--report", str(report_path))
    )
    assert result.code == 0, result.err
    report = json.loads(report_path.read_text())
    assert report["counts"]["changed"] == 2
    assert report["counts"]["unchanged"] == len(rows) - 2
    for row in ls_rows(capsys, out):
        ref = str(row["url"])[len(sim.base_url) :]
        assert (out / str(row["path"])).read_bytes() == expected_bytes(sim.catalogue, ref)


def test_verify_finds_truncation_and_flipped_byte_and_repair_fixes_them(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    mirror(sim, out, capsys)
    rows = ls_rows(capsys, out)
    truncated, flipped, missing = (out / str(r["path"]) for r in rows[:3])
    truncated.write_bytes(truncated.read_bytes()[:-10])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    missing.unlink()

    args = ["verify", "--out", str(out), *FAST]
    result = run_cli(capsys, *args)
    assert result.code == 1, result.err
    assert f"verified {len(rows)} file(s): 1 missing, 2 corrupt" in result.out
    report = latest_report(out, "verify")
    assert report["counts"]["corrupt"] == 2 and report["counts"]["missing"] == 1  # type: ignore[index]

    still = run_cli(capsys, *args)
    assert still.code == 1, "problems remain until repaired"

    repaired = run_cli(capsys, *args, "--repair", "--api-base", sim.base_url)
    assert repaired.code == 0, repaired.err
    for row in rows[:3]:
        ref = str(row["url"])[len(sim.base_url) :]
        assert (out / str(row["path"])).read_bytes() == expected_bytes(sim.catalogue, ref)
    clean = run_cli(capsys, *args)
    assert clean.code == 0 and "0 missing, 0 corrupt" in clean.out


def test_history_lists_runs_with_outcomes(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    mirror(sim, out, capsys)
    assert run_cli(capsys, *sync_args(sim.base_url, out)).code == 0
    assert run_cli(capsys, "verify", "--out", str(out), *FAST).code == 0
    result = run_cli(capsys, "history", "--out", str(out), "--json")
    assert result.code == 0, result.err
    runs = [json.loads(line) for line in result.out.splitlines()]
    assert [r["command"] for r in runs] == ["verify", "sync", "mirror"]
    assert all(r["outcome"] == "ok" and r["exit_code"] == 0 for r in runs)
    assert runs[2]["selection"] == {"data_sets": [DATA_SET]}
    assert runs[2]["counts"]["downloaded"] > 0
    assert all(Path(r["report_path"]).exists() for r in runs)
    human = run_cli(capsys, "history", "--out", str(out))
    assert len(human.out.splitlines()) == 3


def test_failed_items_make_the_report_say_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_config: Path
) -> None:
    from crawler.simulator import SimulatorConfig, serve_in_thread
    from tests.conftest import small_catalogue

    catalogue = small_catalogue(4)
    image = next(
        i
        for i in catalogue.records("SectionImage")
        if i["data_set_id"] == DATA_SET and not i["failed"]
    )
    with serve_in_thread(
        catalogue, SimulatorConfig(permanent_failures={image["id"]: "http_500"})
    ) as sim:
        out = tmp_path / "m"
        result = run_cli(
            capsys, *sync_args(sim.base_url, out, "--config", str(fast_config), "--retries", "1")
        )
        assert result.code == 1
        report = latest_report(out, "sync")
        assert report["outcome"] == "failed" and report["exit_code"] == 1
        failures = report["failures"]
        assert isinstance(failures, list) and len(failures) == 1
        assert str(image["id"]) in failures[0]["url"] and failures[0]["http_status"] == 500


def test_mirror_after_verify_repairs_a_flipped_byte(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    mirror(sim, out, capsys)
    row = ls_rows(capsys, out)[0]
    path = out / str(row["path"])
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    sim.counters.reset()
    mirror(sim, out, capsys)
    assert image_downloads(sim) == {}, "same size: the resume check alone cannot see a flipped byte"
    assert run_cli(capsys, "verify", "--out", str(out), *FAST).code == 1
    mirror(sim, out, capsys)
    assert len(image_downloads(sim)) == 1
    assert path.read_bytes() == expected_bytes(sim.catalogue, str(row["url"])[len(sim.base_url) :])


def test_verify_repairs_a_grid_volume_with_its_own_check(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    args = ["--dataset", str(DATA_SET), "--out", str(out), "--api-base", sim.base_url, *FAST]
    assert run_cli(capsys, "mirror", *args, "--with", "grid").code == 0
    grid = next(r for r in ls_rows(capsys, out) if r["kind"] == "grid")
    path = out / str(grid["path"])
    original = path.read_bytes()
    path.write_bytes(original[:-5] + b"xxxxx")
    result = run_cli(
        capsys, "verify", "--out", str(out), "--repair", "--api-base", sim.base_url, *FAST
    )
    assert result.code == 0, result.err
    assert "1 corrupt, 1 repaired" in result.out
    assert path.read_bytes() == original
