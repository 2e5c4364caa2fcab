"""Settings changes and other selections on one mirror: a path holds one file, and ``mirror`` /
``sync`` fetch what their own selection plans (issue 15, points 1 and 2)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from crawler.simulator import ThreadedSimulator, expected_bytes
from tests.conftest import FAST, ls_rows, run_cli

DATA_SET = "100141599"


def mirror(capsys: pytest.CaptureFixture[str], sim: ThreadedSimulator, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli(
        capsys, "mirror", "--dataset", DATA_SET, "--sections", "1-3", "--out", str(out),
        "--api-base", sim.base_url, *FAST, *extra,
    )  # fmt: skip


def downloads(sim: ThreadedSimulator) -> int:
    return sum(n for url, n in sim.counters.by_url.items() if "image_download" in url)


def assert_one_live_file_per_path(sim: ThreadedSimulator, out: Path, rows: list[dict]) -> None:  # type: ignore[type-arg]
    done = [row for row in rows if row["status"] == "done"]
    assert len({row["path"] for row in done}) == len(done), "two done items on one path"
    for row in done:
        body = (out / str(row["path"])).read_bytes()
        assert hashlib.sha256(body).hexdigest() == row["sha256"]
        assert body == expected_bytes(sim.catalogue, str(row["url"])[len(sim.base_url) :])


def test_a_changed_quality_supersedes_the_old_items_and_a_rerun_fetches_nothing(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    assert mirror(capsys, sim, out).code == 0
    first = ls_rows(capsys, out)
    assert mirror(capsys, sim, out, "--quality", "50").code == 0
    rows = ls_rows(capsys, out)
    assert sorted(r["status"] for r in rows) == ["done"] * len(first) + ["superseded"] * len(first)
    assert_one_live_file_per_path(sim, out, rows)
    assert all("quality=50" in str(r["url"]) for r in rows if r["status"] == "done")

    sim.counters.reset()
    back = mirror(capsys, sim, out)  # the plain settings again: their items come back
    assert back.code == 0, back.err
    assert downloads(sim) == len(first)
    rows = ls_rows(capsys, out)
    assert_one_live_file_per_path(sim, out, rows)
    assert {r["url"] for r in rows if r["status"] == "done"} == {r["url"] for r in first}

    sim.counters.reset()
    assert mirror(capsys, sim, out).code == 0
    assert downloads(sim) == 0, "a rerun with the same settings downloads nothing"
    status = run_cli(capsys, "status", "--out", str(out), "--json")
    document = json.loads(status.out)
    assert document["counts"]["done"] == len(first)
    assert document["counts"]["superseded"] == len(first)
    assert document["bytes"] == sum((out / str(r["path"])).stat().st_size for r in first)
    verify = run_cli(capsys, "verify", "--out", str(out), *FAST)
    assert verify.code == 0, verify.err
    assert f"verified {len(first)} file(s): 0 missing, 0 corrupt" in verify.out
    listed = ls_rows(capsys, out, "--status", "superseded")
    assert len(listed) == len(first) and all("quality=50" in str(r["url"]) for r in listed)


def test_mirror_fetches_its_own_selection_and_says_what_else_is_pending(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    for criteria in ("[id$eq126862385]", "[id$eq100141599]"):
        planned = run_cli(
            capsys, "plan", "--criteria", criteria, "--out", str(out), "--api-base",
            sim.base_url, *FAST,
        )  # fmt: skip
        assert planned.code == 0, planned.err
    others = ls_rows(capsys, out)
    sim.counters.reset()
    result = mirror(capsys, sim, out)
    assert result.code == 0, result.err
    rows = ls_rows(capsys, out)
    done = [r for r in rows if r["status"] == "done"]
    assert done and all(r["data_set_id"] == int(DATA_SET) for r in done)
    assert downloads(sim) == len(done) == 3
    pending = [r for r in rows if r["status"] == "pending"]
    assert len(pending) == len(others) - 3
    assert f"{len(pending)} other pending item(s)" in result.err
    summary = [json.loads(line) for line in result.err.splitlines() if "run.summary" in line]
    assert summary[0]["other_pending"] == len(pending)

    sim.counters.reset()  # a sync of the same selection: nothing to fetch, the rest stays
    synced = run_cli(
        capsys, "sync", "--dataset", DATA_SET, "--sections", "1-3", "--out", str(out),
        "--api-base", sim.base_url, *FAST,
    )  # fmt: skip
    assert synced.code == 0, synced.err
    assert downloads(sim) == 0
    assert f"{len(pending)} other pending item(s)" in synced.err

    worker = run_cli(capsys, "worker", "--out", str(out), "--api-base", sim.base_url, *FAST)
    assert worker.code == 0, worker.err
    assert downloads(sim) == len(pending)
    assert all(r["status"] == "done" for r in ls_rows(capsys, out))
