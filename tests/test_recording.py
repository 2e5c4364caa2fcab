"""Outcomes reach the manifest in batches, and a slow manifest slows the claims down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import anyio
import pytest

from crawler.client import ApiClient
from crawler.config import Settings
from crawler.fetch import Pool, Stop
from crawler.manifest import open_manifest
from crawler.manifest.models import Status
from crawler.manifest.repository import Claimed, Manifest, Outcome
from crawler.simulator import SimulatorConfig, ThreadedSimulator, serve_in_thread
from tests.conftest import FAST, mirror_data_set, small_catalogue
from tests.test_manifest import planned


@pytest.fixture
def sim() -> Iterator[ThreadedSimulator]:
    """A data set of some 150 images: enough items for several claims and batches."""
    with serve_in_thread(small_catalogue(160), SimulatorConfig()) as handle:
        yield handle


def test_a_slow_manifest_holds_back_the_claims(
    sim: ThreadedSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Items claimed and not yet being recorded never exceed one claim plus two batches,
    however slowly the manifest writes (here 0.1 s per batch of 5, against downloads of a
    millisecond); one more batch is in the write itself."""
    monkeypatch.setenv("ALLEN_MIRROR_MANIFEST_BATCH", "5")
    unrecorded, peak, batches = 0, 0, []
    take, record = Pool._take, Manifest.record

    async def counting_take(self: Pool, room: int) -> list[Claimed]:
        nonlocal unrecorded, peak
        claimed = await take(self, room)
        unrecorded += len(claimed)
        peak = max(peak, unrecorded)
        return claimed

    async def slow_record(self: Manifest, outcomes: list[Outcome]) -> None:
        nonlocal unrecorded
        if outcomes:
            await anyio.sleep(0.1)
        await record(self, outcomes)
        unrecorded -= len(outcomes)
        batches.append(len(outcomes))

    monkeypatch.setattr(Pool, "_take", counting_take)
    monkeypatch.setattr(Manifest, "record", slow_record)
    out = tmp_path / "m"
    result = mirror_data_set(capsys, sim, out, "--concurrency", "1", *FAST)
    assert result.code == 0, result.err
    files = len(list(out.rglob("*.jpg")))
    assert files > 100 and sum(batches) == files
    claim_size = 4 * 16  # --concurrency 1: 16 buffered items, a pool alone claims four times that
    assert all(size <= 5 for size in batches)
    # Without the cap every item is claimed long before most are recorded.
    assert 0 < peak <= claim_size + 2 * 5 + 5 < files
    assert unrecorded == 0


def test_outcomes_are_written_in_batches_not_one_by_one(
    sim: ThreadedSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALLEN_MIRROR_MANIFEST_BATCH", "40")
    batches: list[list[Status]] = []
    record = Manifest.record

    async def counting_record(self: Manifest, outcomes: list[Outcome]) -> None:
        batches.append([outcome.status for outcome in outcomes])
        await record(self, outcomes)

    monkeypatch.setattr(Manifest, "record", counting_record)
    out = tmp_path / "m"
    result = mirror_data_set(capsys, sim, out)
    assert result.code == 0, result.err
    written = [batch for batch in batches if batch]
    files = len(list(out.rglob("*.jpg")))
    assert sum(len(batch) for batch in written) == files > 100
    assert all(len(batch) <= 40 for batch in written)
    assert len(written) < files / 5  # full batches, bar those cut by the flush interval


def pool_alone(manifest: Manifest, out: Path, planning_done: anyio.Event) -> Pool:
    """An exclusive pool (a SQLite mirror under its output lock) for calling ``_take`` and
    ``_claim`` directly: taking items never reaches the network, so it has no client."""
    return Pool(
        Settings(out=out, concurrency=1),
        manifest,
        cast(ApiClient, None),
        "me",
        stop=Stop(),
        planning_done=planning_done,
        exclusive=True,
    )


async def test_a_pool_alone_takes_items_sent_back_below_its_cursor(tmp_path: Path) -> None:
    """An exclusive pool claims nothing: it reads past the highest id it took. Once nothing is
    left past it, items sent back to the queue below it (the resume check found their file
    gone) are taken, and none it still holds (fetching, or being recorded) is taken twice."""
    manifest = await open_manifest(f"sqlite:///{tmp_path / 'm.sqlite'}")
    try:
        await manifest.add_items(planned(12), "http://api.test")
        pool = pool_alone(manifest, tmp_path, anyio.Event())
        first = await pool._take(8)
        assert [item.id for item in first] == list(range(1, 9))
        pool.held.update(item.id for item in first)
        await manifest.record(
            [Outcome(id=i, status=Status.DONE, url="u", attempts=1, size=1) for i in (1, 2, 3)]
        )
        pool.held.difference_update({1, 2, 3})
        assert [item.id for item in await pool._take(8)] == [9, 10, 11, 12]
        pool.held.update({9, 10, 11, 12})
        await manifest.mark_pending([2], "file missing")  # found gone by the resume check
        assert [item.id for item in await pool._take(8)] == [2]
        pool.held.add(2)
        assert await pool._take(8) == []  # the rest are all held
        rows = [row async for row in manifest.rows()]
        assert all(row["claimed_by"] is None for row in rows)
    finally:
        await manifest.close()


async def test_an_empty_take_that_raced_the_end_of_planning_looks_again(tmp_path: Path) -> None:
    """The planner's last items and its "planning done" can land while a take reads an older
    view of the manifest: that empty read must not end the pool with items pending."""
    manifest = await open_manifest(f"sqlite:///{tmp_path / 'm.sqlite'}")
    planning_done = anyio.Event()
    pool = pool_alone(manifest, tmp_path, planning_done)
    read = manifest.pending
    reads = 0

    async def racing_read(*, after: int, limit: int, upto: int | None = None) -> list[Claimed]:
        nonlocal reads
        reads += 1
        seen = await read(after=after, limit=limit, upto=upto)
        if reads == 1:  # the planner finishes while this read is under way
            await manifest.add_items(planned(3), "http://api.test")
            planning_done.set()
            pool.poke()
        return seen

    manifest.pending = racing_read  # type: ignore[method-assign]
    try:
        with anyio.fail_after(10):
            await pool._claim()
    finally:
        await manifest.close()
    assert [item.id for item in pool.queue] == [1, 2, 3]
    assert not pool.claiming
