"""End to end against the simulator over HTTP: bytes on disk, manifest rows, server counters."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from crawler.simulator import SimulatorConfig, expected_bytes, serve_in_thread
from tests.conftest import FAST, image_requests, ls_rows, run_cli, small_catalogue
from tests.planning import planned_ref

DATA_SET = "100141599"


def mirror_args(sim_url: str, out: Path, *extra: str) -> list[str]:
    return [
        "mirror",
        "--dataset",
        DATA_SET,
        "--out",
        str(out),
        "--api-base",
        sim_url,
        *FAST,
        *extra,
    ]


def section_images(sim, data_set: int) -> list[dict]:  # type: ignore[no-untyped-def]
    return [
        image
        for image in sim.catalogue.records("SectionImage")
        if image["data_set_id"] == data_set and not image["failed"]
    ]


def test_full_mirror_is_byte_identical_and_second_run_is_free(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mirror"
    result = run_cli(capsys, *mirror_args(sim.base_url, out))
    assert result.code == 0, result.err

    images = section_images(sim, int(DATA_SET))
    assert images, "the catalogue has images for the data set"
    files = sorted(p for p in (out / DATA_SET / "section" / "ds4").iterdir())
    assert len(files) == len(images)
    for image in images:
        name = f"{image['section_number']:04d}_{image['id']}.jpg"
        body = (out / DATA_SET / "section" / "ds4" / name).read_bytes()
        ref = planned_ref(sim.catalogue, image)
        # connectivity data: --range auto sends the Equalization (0/923, 0/987, 0/4095)
        assert ref == (
            f"/api/v2/section_image_download/{image['id']}?downsample=4&range=0,923,0,987,0,4095"
        )
        assert body == expected_bytes(sim.catalogue, ref)
    assert not list(out.rglob("*.part"))

    record = json.loads((out / DATA_SET / "dataset.json").read_text())
    assert record["data_set"]["id"] == int(DATA_SET)
    assert record["equalization"]["red_upper"] == 923
    assert len(record["section_images"]) >= len(images)

    # every manifest row says done, with the size and sha256 of the bytes on disk
    rows = ls_rows(capsys, out)
    assert len(rows) == len(images)
    for row in rows:
        body = (out / str(row["path"])).read_bytes()
        assert row["status"] == "done"
        assert row["size"] == len(body)
        assert row["sha256"] == hashlib.sha256(body).hexdigest()
        assert str(row["url"]).startswith(sim.base_url)
    assert {str(row["url"])[len(sim.base_url) :] for row in rows} == {
        planned_ref(sim.catalogue, image) for image in images
    }

    before = image_requests(sim)
    again = run_cli(capsys, *mirror_args(sim.base_url, out))
    assert again.code == 0, again.err
    assert image_requests(sim) == before, "a second run must not download anything"
    summary = [json.loads(x) for x in again.err.splitlines() if '"run.summary"' in x][-1]
    assert summary["done"] == 0 and summary["already_done"] == len(images)


def test_concurrency_cap_is_never_exceeded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve_in_thread(small_catalogue(12), SimulatorConfig(latency_ms=40)) as sim:
        result = run_cli(capsys, *mirror_args(sim.base_url, tmp_path / "m", "--concurrency", "3"))
        assert result.code == 0, result.err
        assert sim.counters.max_in_flight == 3  # reached, never exceeded


def test_rate_cap_spaces_requests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve_in_thread(small_catalogue(12), SimulatorConfig()) as sim:
        started = time.monotonic()
        result = run_cli(
            capsys, *mirror_args(sim.base_url, tmp_path / "m", "--rate", "20", "--concurrency", "8")
        )
        elapsed = time.monotonic() - started
        assert result.code == 0, result.err
        requests = sim.counters.requests_total
        # n requests at 20/s need at least (n - burst) / 20 seconds; the burst is 2 (0.1 s)
        assert requests >= 13
        assert elapsed >= (requests - 2) / 20 * 0.95


def test_resume_refetches_only_missing_or_damaged_files(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mirror"
    assert run_cli(capsys, *mirror_args(sim.base_url, out)).code == 0
    files = sorted((out / DATA_SET / "section" / "ds4").iterdir())
    files[0].unlink()
    files[1].write_bytes(files[1].read_bytes()[:100])
    stale = files[2].with_name(files[2].name + ".part")
    stale.write_bytes(b"half")
    old = time.time() - 60
    import os

    os.utime(stale, (old, old))
    sim.counters.reset()
    result = run_cli(capsys, *mirror_args(sim.base_url, out))
    assert result.code == 0, result.err
    fetched = {url for url in sim.counters.by_url if "section_image_download" in url}
    assert len(fetched) == 2
    assert not stale.exists()
    by_id = {str(image["id"]): image for image in section_images(sim, int(DATA_SET))}
    for path in files[:2]:
        image = by_id[path.stem.split("_")[1]]
        assert path.read_bytes() == expected_bytes(sim.catalogue, planned_ref(sim.catalogue, image))


def test_ls_and_status_agree_with_disk(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mirror"
    assert run_cli(capsys, *mirror_args(sim.base_url, out)).code == 0
    on_disk = {p.relative_to(out).as_posix(): p.stat().st_size for p in out.rglob("*.jpg")}
    rows = ls_rows(capsys, out, "--status", "done")
    assert {str(r["path"]): r["size"] for r in rows} == on_disk

    status = run_cli(capsys, "status", "--out", str(out), "--json")
    assert status.code == 0, status.err
    document = json.loads(status.out)
    assert document["counts"]["done"] == len(on_disk)
    assert document["bytes"] == sum(on_disk.values())
    assert document["data_sets"][DATA_SET]["done"] == len(on_disk)

    table = run_cli(capsys, "ls", "--out", str(out), "--format", "table")
    assert table.code == 0 and len(table.out.splitlines()) == len(on_disk) + 1
    human = run_cli(capsys, "status", "--out", str(out))
    assert f"{len(on_disk)} done" in human.out


def test_plan_records_pending_items_without_downloading(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mirror"
    args = ["plan", "--dataset", DATA_SET, "--dataset", "126862385", "--out", str(out)]
    result = run_cli(capsys, *args, "--api-base", sim.base_url, *FAST)
    assert result.code == 0, result.err
    assert image_requests(sim) == 0
    expected = len(section_images(sim, 100141599)) + len(section_images(sim, 126862385))
    assert f"{expected} item(s) ({expected} new)" in result.out
    again = run_cli(capsys, *args, "--api-base", sim.base_url, *FAST)
    assert f"({0} new)" in again.out
    connection = sqlite3.connect(out / "manifest.sqlite")
    (pending,) = connection.execute("select count(*) from items where status='pending'").fetchone()
    connection.close()
    assert pending == expected


def test_unknown_data_set_is_exit_2_in_one_line(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(
        capsys,
        "mirror",
        "--dataset",
        "999",
        "--out",
        str(tmp_path / "m"),
        "--api-base",
        sim.base_url,
        *FAST,
    )
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.startswith("allen-mirror: error")]
    assert lines == [
        f"allen-mirror: error: no SectionDataSet with id 999 at {sim.base_url} "
        "(--ignore-missing skips unknown ids and fetches the rest)"
    ]
    assert "Traceback" not in result.err
