"""Outcomes reach the manifest in batches, a slow manifest slows the taking of items down, and
a source alone on its manifest never hands out an item twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from crawler.commit import BATCH_FILES
from crawler.manifest import open_manifest
from crawler.manifest.models import Status
from crawler.manifest.repository import Claimed, Manifest, Outcome
from crawler.signals import Stop
from crawler.simulator import SimulatorConfig, ThreadedSimulator, serve_in_thread
from crawler.source import CursorSource, Planning
from tests.conftest import FAST, mirror_data_set, small_catalogue
from tests.planning import planned


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
    """Items taken and not yet recorded never exceed one take plus what the bounded streams
    between the stages hold, however slowly the manifest writes (here 0.1 s per batch of 5,
    against downloads of a millisecond)."""
    monkeypatch.setenv("ALLEN_MIRROR_MANIFEST_BATCH", "5")
    unrecorded, peak, batches = 0, 0, []
    read, record = Manifest.pending, Manifest.record

    async def counting_read(
        self: Manifest, *, after: int, limit: int, run: int | None = None
    ) -> list[Claimed]:
        nonlocal unrecorded, peak
        taken = await read(self, after=after, limit=limit, run=run)
        unrecorded += len(taken)
        peak = max(peak, unrecorded)
        return taken

    async def slow_record(self: Manifest, outcomes: list[Outcome]) -> None:
        nonlocal unrecorded
        if outcomes:
            await anyio.sleep(0.1)
        await record(self, outcomes)
        unrecorded -= len(outcomes)
        batches.append(len(outcomes))

    monkeypatch.setattr(Manifest, "pending", counting_read)
    monkeypatch.setattr(Manifest, "record", slow_record)
    out = tmp_path / "m"
    result = mirror_data_set(capsys, sim, out, "--concurrency", "1", *FAST)
    assert result.code == 0, result.err
    files = len(list(out.rglob("*.jpg")))
    assert files > 100 and sum(batches) == files
    take = 4 * 16  # --concurrency 1: a source alone reads 64 items at a time
    # the work and fetched streams (2 each), the one fetch task, the store stage's batch (what
    # arrives within its linger, at most BATCH_FILES), the outcome stream (5) and the
    # recorder's batch (5)
    buffers = 2 + 1 + 2 + BATCH_FILES + 5 + 5
    assert all(size <= 5 for size in batches)
    # Without the bounds every item is taken long before most are recorded.
    assert 0 < peak <= take + buffers < files
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


def source_alone(manifest: Manifest, planning: Planning) -> CursorSource:
    """A source alone on its manifest (SQLite under the output lock), taking 8 at a time."""
    return CursorSource(manifest, planning, Stop(), batch=8)


async def test_a_source_alone_takes_items_sent_back_below_its_cursor(tmp_path: Path) -> None:
    """A source alone on its manifest claims nothing: it reads past the highest id it took.
    Items handed back to the queue below it (the resume check found their file gone) are taken
    next, and none it still holds (fetching, or being recorded) is taken twice."""
    manifest = await open_manifest(f"sqlite:///{tmp_path / 'm.sqlite'}")
    try:
        await manifest.add_items(planned(12), "http://api.test")
        source = source_alone(manifest, Planning(finished=True))
        assert [item.id for item in await source.take()] == list(range(1, 9))
        await manifest.record(
            [Outcome(id=i, status=Status.DONE, url="u", attempts=1, size=1) for i in (1, 2, 3)]
        )
        source.recorded([1, 2, 3])
        await manifest.mark_pending([2, 5], "file missing")  # 5 is still being fetched
        source.returned([2, 5])
        assert [item.id for item in await source.take()] == [2]
        assert [item.id for item in await source.take()] == [9, 10, 11, 12]
        assert await source.take() == []  # the rest are all held
        rows = [row async for row in manifest.rows()]
        assert all(row["claimed_by"] is None for row in rows)
    finally:
        await manifest.close()


async def test_an_empty_take_that_raced_the_end_of_planning_looks_again(tmp_path: Path) -> None:
    """The planner's last items and its "planning done" can land while a take reads an older
    view of the manifest: that empty read must not end the source with items pending."""
    manifest = await open_manifest(f"sqlite:///{tmp_path / 'm.sqlite'}")
    planning = Planning()
    source = source_alone(manifest, planning)
    read = manifest.pending
    reads = 0

    async def racing_read(*, after: int, limit: int, run: int | None = None) -> list[Claimed]:
        nonlocal reads
        reads += 1
        seen = await read(after=after, limit=limit, run=run)
        if reads == 1:  # the planner finishes while this read is under way
            await manifest.add_items(planned(3), "http://api.test")
            planning.finish()
        return seen

    manifest.pending = racing_read  # type: ignore[method-assign]
    send, receive = anyio.create_memory_object_stream[Claimed](10)
    try:
        with anyio.fail_after(10):
            await source.run(send)
        async with receive:
            assert [item.id async for item in receive] == [1, 2, 3]
    finally:
        await manifest.close()
