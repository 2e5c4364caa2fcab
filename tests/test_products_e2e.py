"""Whole products over HTTP: batched seeding plans what per-data-set seeding planned, within the
page and URL limits, and a sync of an unchanged product re-plans and rewrites nothing."""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import pytest

from crawler import pipeline, rma, seed, seeding, seenpages, stamps
from crawler.client import ApiClient
from crawler.config import Settings
from crawler.localstore import LocalStore
from crawler.planner import recheck_done_files
from crawler.simulator import Catalogue, SimulatorConfig, ThreadedSimulator, serve_in_thread
from tests.conftest import FAST, image_requests, ls_rows, run_cli

CONNECTIVITY, ISH = "5", "1"
EXTRA_CONNECTIVITY, EXTRA_ISH, SECTIONS = 14, 16, 5


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.build(
        sections_per_dataset=SECTIONS,
        extra_connectivity_datasets=EXTRA_CONNECTIVITY,
        extra_ish_datasets=EXTRA_ISH,
        image_scale=0.02,
    )


@pytest.fixture
def sim(catalogue: Catalogue) -> Iterator[ThreadedSimulator]:
    with serve_in_thread(catalogue, SimulatorConfig()) as handle:
        yield handle


def config(tmp_path: Path, page_size: int) -> Path:
    path = tmp_path / f"page-{page_size}.toml"
    path.write_text(f"page_size = {page_size}\nmanifest_flush_seconds = 0.1\n")
    return path


def cli(sim: ThreadedSimulator, command: str, out: Path, *extra: str) -> list[str]:
    return [command, "--out", str(out), "--api-base", sim.base_url, *FAST, *extra]


async def per_data_set_listing(
    base: str, data_set_ids: list[int], page_size: int
) -> dict[int, list[dict[str, object]]]:
    """What seeding one data set per query (the way it was) lists for each data set."""
    settings = Settings(api_base=base, page_size=page_size)
    async with ApiClient.open(settings) as client:
        return {
            i: await seed.fetch_section_images(client, base, i, page_size=page_size)
            for i in data_set_ids
        }


def rma_urls(sim: ThreadedSimulator) -> list[str]:
    return [unquote(u) for u in sim.counters.by_url if u.startswith("/api/v2/data/")]


@pytest.mark.parametrize(
    ("selection", "page_size"),
    [
        (["--product", CONNECTIVITY], 2000),
        (["--product", ISH], 7),  # chunks of a few data sets, each over several pages
        (["--product", ISH, "--product", CONNECTIVITY], 3),  # one data set spans pages
        (["--dataset", "100141599", "--dataset", "69782969", "--dataset", "126862385"], 2000),
    ],
)
def test_batched_seeding_lists_and_plans_what_one_query_per_data_set_did(
    sim: ThreadedSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    selection: list[str],
    page_size: int,
) -> None:
    out = tmp_path / "m"
    result = run_cli(capsys, *cli(sim, "plan", out, "--config", str(config(tmp_path, page_size)),
                                 *selection))  # fmt: skip
    assert result.code == 0, result.err
    urls = rma_urls(sim)
    assert all(len(u) < seeding.URL_LIMIT for u in urls)
    assert all(f"num_rows$eq{page_size}]" in u for u in urls)
    image_queries = [u for u in urls if "model::SectionImage" in u]
    listed = {int(p.name) for p in out.iterdir() if (p / "dataset.json").is_file()}
    assert len(listed) > 1 and len(image_queries) <= len(listed) * math.ceil(SECTIONS / page_size)
    if page_size == 2000:  # the first query sized by a guess, then one for the rest
        assert len(image_queries) <= 2

    reference = anyio.run(per_data_set_listing, sim.base_url, sorted(listed), page_size)
    for data_set_id, images in reference.items():
        stored = json.loads((out / str(data_set_id) / "dataset.json").read_text())
        assert stored["section_images"] == images  # same records, same order
        assert stored["image_count"] == len(images)
    items = ls_rows(capsys, out)
    planned = {(int(str(r["data_set_id"])), int(str(r["image_id"]))) for r in items}
    usable = {(d, int(str(i["id"]))) for d, images in reference.items() for i in images
              if not i["failed"]}  # fmt: skip
    assert planned == usable


def test_chunks_stay_within_the_url_limit(
    sim: ThreadedSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tight URL limit (the live service's is ~8 kB) splits chunks that the rows would allow."""
    monkeypatch.setattr(seeding, "URL_LIMIT", 300)
    out = tmp_path / "m"
    result = run_cli(capsys, *cli(sim, "plan", out, "--product", ISH, "--product", CONNECTIVITY))
    assert result.code == 0, result.err
    image_queries = [u for u in rma_urls(sim) if "SectionImage" in u]
    sent = [rma.query_url(sim.base_url, u.partition("criteria=")[2]) for u in image_queries]
    assert max(len(u) for u in sent) <= 300 and len(image_queries) >= 5
    data_sets = 3 + EXTRA_CONNECTIVITY - 1 + 1 + EXTRA_ISH  # the failed one is not listed
    assert len(list(out.glob("*/dataset.json"))) == data_sets


def mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/dataset.json")}


def events(err: str, name: str) -> list[dict[str, object]]:
    found = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [e for e in found if e.get("event") == name]


def test_a_sync_of_an_unchanged_product_replans_and_rewrites_nothing_then_sees_changes(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    first = run_cli(capsys, *cli(sim, "mirror", out, "--product", ISH))
    assert first.code == 0, first.err
    image_queries = [u for u in rma_urls(sim) if "SectionImage" in u]
    rows_before = {r["url"]: r for r in ls_rows(capsys, out)}
    written = mtimes(out)
    assert len(written) == 1 + EXTRA_ISH

    sim.counters.reset()
    quiet = run_cli(capsys, *cli(sim, "sync", out, "--product", ISH))
    assert quiet.code == 0, quiet.err
    assert image_requests(sim) == 0
    # The product's data sets, then the mirror's image queries again, not decoded: their
    # pages are the ones the mirror remembered (crawler/seenpages.py).
    assert sorted(u for u in rma_urls(sim) if "SectionImage" in u) == sorted(image_queries)
    assert sim.counters.by_route.get("rma", 0) == 1 + len(image_queries)
    assert mtimes(out) == written
    assert events(quiet.err, "plan.unchanged")[0]["data_sets"] == len(written)
    assert events(quiet.err, "plan.unchanged")[0]["undecoded"] == len(written)
    assert not events(quiet.err, "plan.batch")
    assert {r["url"]: r for r in ls_rows(capsys, out)} == rows_before
    (summary,) = events(quiet.err, "run.summary")
    assert summary["new_items"] == 0 and summary["items_planned"] == len(rows_before)

    ish = sorted(int(d) for d in written if int(d) != 69782969)
    grown, shrunk = ish[0], ish[1]
    added = sim.catalogue.add_section(grown)
    gone = sim.catalogue.lookup("SectionImage", "data_set_id", shrunk)[0]
    sim.catalogue.remove_section(int(str(gone["id"])))
    sim.counters.reset()
    changed = run_cli(capsys, *cli(sim, "sync", out, "--product", ISH))
    assert changed.code == 0, changed.err
    assert image_requests(sim) == 1
    now = mtimes(out)
    assert {d for d in now if now[d] != written[d]} == {str(grown), str(shrunk)}
    (batch,) = events(changed.err, "plan.batch")
    assert batch["data_sets"] == 2 and batch["new"] == 1
    rows = {int(str(r["image_id"])): r for r in ls_rows(capsys, out)}
    assert rows[int(str(added["id"]))]["status"] == "done"
    assert rows[int(str(gone["id"]))]["status"] == "removed"

    # A new manifest under the same output directory: the stamps no longer vouch for anything.
    (out / "manifest.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (out / f"manifest.sqlite{suffix}").unlink(missing_ok=True)
    again = run_cli(capsys, *cli(sim, "plan", out, "--product", ISH))
    assert again.code == 0, again.err
    assert not events(again.err, "plan.unchanged")
    assert len(ls_rows(capsys, out)) == len(rows) - 1  # everything but the removed image


def test_pages_are_skipped_undecoded_only_while_the_stamps_vouch_for_them(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    assert run_cli(capsys, *cli(sim, "mirror", out, "--product", ISH)).code == 0
    written = mtimes(out)

    def sync() -> tuple[int, int, list[object]]:
        """(data sets unchanged, of them skipped undecoded, data sets planned again)."""
        result = run_cli(capsys, *cli(sim, "sync", out, "--product", ISH))
        assert result.code == 0, result.err
        assert events(result.err, "run.summary")[0]["new_items"] == 0
        (unchanged,) = events(result.err, "plan.unchanged")
        planned = [e["data_set_id"] for e in events(result.err, "plan.data_set")]
        return int(str(unchanged["data_sets"])), int(str(unchanged["undecoded"])), planned

    # A stamp that no longer carries the remembered fingerprint: its chunk is decoded, the
    # data set planned again; the other chunks' pages are still recognised.
    victim = min(written)
    path = out / victim / stamps.FILE
    head = len(b'{"fingerprint": "')
    document = path.read_bytes()
    path.write_bytes(document[:head] + b"0" * 64 + document[head + 64 :])
    skipped, undecoded, planned = sync()
    assert planned == [int(victim)] and skipped == len(written) - 1
    assert 0 < undecoded < skipped
    assert sync() == (len(written), len(written), [])

    # An unreadable memory remembers nothing: every page decoded, nothing planned again; the
    # sync remembers its queries afresh.
    (out / seenpages.FILE).write_bytes(b'{"version": 1, "queries": [{"ids": "junk"')
    assert sync() == (len(written), 0, [])
    assert sync() == (len(written), len(written), [])


def test_data_sets_by_id_come_in_chunks_and_an_unknown_id_is_still_a_usage_error(
    sim: ThreadedSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(seed, "ID_CHUNK", 2)
    ids = sorted(int(str(r["id"])) for r in sim.catalogue.records("SectionDataSet"))[:5]
    selection = [arg for i in ids for arg in ("--dataset", str(i))]
    result = run_cli(capsys, *cli(sim, "plan", tmp_path / "m", *selection))
    assert result.code == 0, result.err
    queries = [u for u in rma_urls(sim) if "model::SectionDataSet" in u]
    assert len(queries) == 3
    assert {int(p.parent.name) for p in (tmp_path / "m").glob("*/dataset.json")} <= set(ids)
    unknown = run_cli(capsys, *cli(sim, "plan", tmp_path / "n", *selection, "--dataset", "7"))
    assert unknown.code == 2 and "no SectionDataSet with id 7" in unknown.err


def test_a_sync_after_an_interrupted_mirror_fetches_what_is_missing(
    catalogue: Catalogue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every data set was planned and stamped, few of its items done: the sync must not take
    the stamps for "nothing to do" (a skipped data set's items are not the sync's to fetch)."""
    out = tmp_path / "m"
    with serve_in_thread(catalogue, SimulatorConfig(latency_ms=150)) as slow:
        args = cli(slow, "mirror", out, "--product", ISH, "--concurrency", "2")
        process = subprocess.Popen(
            [sys.executable, "-m", "crawler", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while done_items(out) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, err[-2000:]
    ids = [int(p.parent.name) for p in out.glob("*/dataset.json")]
    stamped = anyio.run(stamps.read_stamps, LocalStore(out), ids)
    assert len(stamped) == 1 + EXTRA_ISH  # planning finished before the stop
    rows = ls_rows(capsys, out)
    missing = [r for r in rows if r["status"] != "done"]
    assert missing and len(missing) < len(rows)

    with serve_in_thread(catalogue, SimulatorConfig()) as fast:
        result = run_cli(capsys, *cli(fast, "sync", out, "--product", ISH))
        assert result.code == 0, result.err
        assert image_requests(fast) == len([r for r in missing if r["kind"] == "section"])
        assert all(r["status"] == "done" for r in ls_rows(capsys, out))
        again = run_cli(capsys, *cli(fast, "sync", out, "--product", ISH))
        assert again.code == 0, again.err
    assert events(again.err, "plan.unchanged")[0]["data_sets"] == len(stamped)


def test_files_lost_under_skipped_data_sets_are_fetched_again_and_recheck_skips_nothing(
    sim: ThreadedSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "m"
    assert run_cli(capsys, *cli(sim, "mirror", out, "--product", ISH)).code == 0
    rows = ls_rows(capsys, out)
    lost, corrupt = rows[0], rows[-1]
    (out / str(lost["path"])).unlink()
    (out / str(corrupt["path"])).write_bytes(b"\xff\xd8 not the same bytes \xff\xd9")
    assert run_cli(capsys, "verify", "--out", str(out), *FAST).code == 1  # flags the corrupt one
    (out / str(corrupt["path"])).write_bytes(b"\xff\xd8 changed again, same size? \xff\xd9")

    async def late_resume_check(*args: Any) -> int:
        """The resume check runs beside planning; here it finds the bad files only after the
        planner counted every item done and skipped every data set."""
        await anyio.sleep(1.0)
        return await recheck_done_files(*args)

    monkeypatch.setattr(pipeline, "recheck_done_files", late_resume_check)
    sim.counters.reset()
    result = run_cli(capsys, *cli(sim, "sync", out, "--product", ISH))
    assert result.code == 0, result.err
    assert events(result.err, "plan.unchanged")[0]["data_sets"] == 1 + EXTRA_ISH
    assert image_requests(sim) == 2  # the lost file and the flagged one, nothing else
    assert run_cli(capsys, "verify", "--out", str(out), *FAST).code == 0
    assert all(r["status"] == "done" for r in ls_rows(capsys, out))

    sim.counters.reset()
    rechecked = run_cli(capsys, *cli(sim, "sync", out, "--product", ISH, "--recheck"))
    assert rechecked.code == 0, rechecked.err
    assert not events(rechecked.err, "plan.unchanged")
    assert image_requests(sim) == len([r for r in rows if r["kind"] == "section"])
    (summary,) = events(rechecked.err, "run.summary")
    assert summary["unchanged"] == len(rows)


def done_items(out: Path) -> int:
    try:
        connection = sqlite3.connect(out / "manifest.sqlite", timeout=30)
    except sqlite3.Error:
        return 0
    try:
        return int(
            connection.execute("select count(*) from items where status='done'").fetchone()[0]
        )
    except sqlite3.Error:
        return 0
    finally:
        connection.close()


def test_a_sync_still_removes_what_a_mirror_replanned_away(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mirror plans a changed listing but removes nothing; the sync after it finds the data
    set unchanged, yet its items are more than the listing planned: it is reconciled."""
    out = tmp_path / "m"
    assert run_cli(capsys, *cli(sim, "mirror", out, "--product", ISH)).code == 0
    data_set = min(int(p.parent.name) for p in out.glob("*/dataset.json"))
    gone = sim.catalogue.lookup("SectionImage", "data_set_id", data_set)[0]
    sim.catalogue.remove_section(int(str(gone["id"])))
    assert run_cli(capsys, *cli(sim, "mirror", out, "--product", ISH)).code == 0
    rows = {int(str(r["image_id"])): r for r in ls_rows(capsys, out)}
    assert rows[int(str(gone["id"]))]["status"] == "done"  # a mirror removes nothing

    result = run_cli(capsys, *cli(sim, "sync", out, "--product", ISH))
    assert result.code == 0, result.err
    assert events(result.err, "plan.unchanged")[0]["data_sets"] == 1 + EXTRA_ISH
    (removed,) = events(result.err, "sync.removed")
    assert removed["data_set_id"] == data_set and removed["items"] == 1
    rows = {int(str(r["image_id"])): r for r in ls_rows(capsys, out)}
    assert rows[int(str(gone["id"]))]["status"] == "removed"
    assert sum(r["status"] == "done" for r in rows.values()) == len(rows) - 1
