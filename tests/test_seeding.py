"""Batched seeding's decisions, the stamps of dataset.json and the request slots: pure units."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from crawler import seeding, stamps
from crawler.localstore import LocalStore
from crawler.plan import PlanOptions
from crawler.slots import PrioritySlots

BASE = "http://api.brain-map.org"


@pytest.mark.parametrize(
    ("counts", "estimate", "page_rows", "room", "start", "expected"),
    [
        # Known counts fill a page, strictly below page_rows (a full page means one more ask).
        ([140] * 30, 140.0, 2000, 7000, 0, 14),
        ([500, 500, 500, 499, 1], 1.0, 2000, 7000, 0, 4),
        ([500, 500, 500, 500], 1.0, 2000, 7000, 0, 3),
        # Unknown counts weigh estimate / PAGE_FILL: 140 / 0.9 = 155.6, twelve per page.
        ([None] * 30, 140.0, 2000, 7000, 0, 12),
        ([None] * 300, 20.0, 2000, 7000, 0, 89),
        # Mixed: known ones exactly, unknown ones estimated.
        ([1000, None, None, None], 450.0, 2000, 7000, 0, 2),
        # A data set larger than a page still goes alone (paged), never zero per query.
        ([5000, 10], 1.0, 2000, 7000, 0, 1),
        ([10, 5000], 1.0, 2000, 7000, 1, 2),
        # The URL's room for ids caps a chunk however small the data sets (10 chars per id).
        ([1] * 1000, 1.0, 2000, 99, 0, 10),
        ([1] * 1000, 1.0, 2000, 100, 0, 10),
        ([1] * 1000, 1.0, 2000, 109, 0, 11),
        # From a later position, and at the end.
        ([140] * 30, 140.0, 2000, 7000, 28, 30),
    ],
)
def test_next_chunk(
    counts: list[int | None],
    estimate: float,
    page_rows: int,
    room: int,
    start: int,
    expected: int,
) -> None:
    ids = [100_000_000 + i for i in range(len(counts))]  # nine digits and a comma: 10 chars
    end = seeding.next_chunk(
        ids, counts, start=start, estimate=estimate, page_rows=page_rows, room=room
    )
    assert end == expected


@pytest.mark.parametrize("page_size", [1, 2000, 25000])
def test_a_chunk_as_wide_as_the_room_stays_under_the_url_limit(page_size: int) -> None:
    room = seeding.id_room(BASE, page_size)
    ids = [900_000_000 + i for i in range(2000)]
    end = seeding.next_chunk(ids, [1] * len(ids), start=0, estimate=1.0, page_rows=10**9, room=room)
    url = seeding.page_url(BASE, seeding.image_stages(ids[:end]), page_size, start_row=10**11)
    assert len(url) <= seeding.URL_LIMIT
    longer = seeding.page_url(BASE, seeding.image_stages(ids[: end + 1]), page_size, 10**11)
    assert len(longer) > seeding.URL_LIMIT - 10  # the room is used, not wasted
    assert "%5Bdata_set_id$in900000000,900000001," in url


def test_the_single_data_set_query_is_the_one_seeding_always_sent() -> None:
    assert seeding.image_stages([7]) == (
        "model::SectionImage,rma::criteria,[data_set_id$eq7],rma::include,alignment2d"
    )
    assert seeding.image_stages([7, 8]) == (
        "model::SectionImage,rma::criteria,[data_set_id$in7,8],rma::include,alignment2d"
    )


def test_the_estimate_follows_the_answers() -> None:
    estimator = seeding.Estimator()
    assert not estimator.known and estimator.estimate == seeding.FIRST_ESTIMATE
    estimator.observe(10, 200)
    assert estimator.known and estimator.estimate == 20.0
    estimator.observe(10, 0)
    assert estimator.estimate == 10.0
    estimator.observe(5, 0)
    assert estimator.estimate == 8.0


def test_images_grouped_by_data_set_then_checked_and_sorted() -> None:
    records = [{"id": 1}, {"id": 2}, {"id": 3}]
    rows = [
        {"id": 30, "data_set_id": 1, "section_number": 2},
        {"id": 10, "data_set_id": 1, "section_number": 2},
        {"id": 20, "data_set_id": 1, "section_number": 1},
        {"id": 40, "data_set_id": 2, "section_number": 1},
        {"id": 50, "data_set_id": 9, "section_number": 1},
        {"id": "../../x", "data_set_id": 2, "section_number": 1},  # refused by crawler/records.py
        {"id": 60, "data_set_id": "2", "section_number": 10**300},
        {"id": "70", "data_set_id": "3"},  # numeric strings become whole numbers
    ]
    batch = seeding.group_images(records, rows)  # as they came, strangers dropped
    assert [[r["id"] for r in batch.images[i]] for i in (1, 2, 3)] == [
        [30, 10, 20],
        [40, "../../x"],
        [70],
    ]  # fmt: skip: 60 came with a string data set id, so it was checked (and refused) at once
    assert batch.images[3][0]["data_set_id"] == 3  # checked at once: its data set was a string
    usable = [[r["id"] for r in seeding.usable_images(batch.images[i])] for i in (1, 2, 3)]
    assert usable == [[20, 10, 30], [40], [70]]
    assert seeding.listed_ids(batch.images[2]) == {40}


# -- stamps -------------------------------------------------------------------------------------


def test_a_stamped_document_is_the_same_json_plus_its_stamp() -> None:
    record = {"id": 5, "equalization": None, "failed": False}
    document = stamps.listing_document(record, [{"id": 1, "data_set_id": 5}])
    stamp = stamps.Stamp(stamps.fingerprint(record, []), "b" * 64, 12, 3456, 1, 1, 0)
    written = stamps.stamped(document, stamp)
    assert stamps.parse_stamp(written[: stamps.HEAD_BYTES]) == stamp
    parsed = json.loads(written)
    assert parsed["fingerprint"] == stamp.fingerprint and parsed["items"] == 12
    assert {k: v for k, v in parsed.items() if k in json.loads(document)} == json.loads(document)
    assert stamps.parse_stamp(document) is None  # an older mirror's file: plan it


def test_the_fingerprint_sees_any_change_of_the_listing_and_nothing_else() -> None:
    record = {"id": 5, "equalization": None, "alignment3d": {"tvr_00": 0.1}}
    images = [{"id": 1, "width": 10, "x": 0.5}, {"id": 2, "width": 10, "x": 0.5}]
    base = stamps.fingerprint(record, images)
    # Equal values in other objects (another page, another run): the same fingerprint.
    assert (
        stamps.fingerprint(json.loads(json.dumps(record)), json.loads(json.dumps(images))) == base
    )
    shared = {"id": 1, "width": 10, "x": 0.5}  # one object twice: no back-references
    assert stamps.fingerprint(record, [shared, {**shared, "id": 2}]) == base
    others = [
        (record, [images[0], {"id": 2, "width": 11, "x": 0.5}]),
        (record, [images[0], {"id": 2, "width": 10, "x": 0.5000001}]),
        (record, [images[0], {"id": 2, "width": 10.0, "x": 0.5}]),  # a type changed
        (record, images[:1]),
        ({**record, "failed": True}, images),
        ({**record, "alignment3d": {"tvr_00": 0.2}}, images),
    ]
    assert len({base, *(stamps.fingerprint(r, i) for r, i in others)}) == 1 + len(others)


def test_the_plan_key_changes_with_the_settings_that_shape_items() -> None:
    key = stamps.plan_key(PlanOptions(), None, False)
    assert key == stamps.plan_key(PlanOptions(), None, False)
    others = {
        stamps.plan_key(PlanOptions(downsample=3), None, False),
        stamps.plan_key(PlanOptions(tile=256), None, False),
        stamps.plan_key(PlanOptions(kinds=("section", "projection")), None, False),
        stamps.plan_key(PlanOptions(), (1, 10), False),
        stamps.plan_key(PlanOptions(), None, True),
    }
    assert key not in others and len(others) == 5


@pytest.mark.parametrize(
    ("fingerprint", "plan", "done", "unfinished", "unchanged"),
    [
        ("f" * 64, "p" * 64, 140, False, True),
        ("f" * 64, "p" * 64, 141, False, True),  # other selections' items of the data set
        ("e" * 64, "p" * 64, 140, False, False),  # the listing changed
        ("f" * 64, "q" * 64, 140, False, False),  # other settings
        ("f" * 64, "p" * 64, 139, False, False),  # items missing from the manifest
        ("f" * 64, "p" * 64, 0, False, False),  # a new manifest under an old output directory
        ("f" * 64, "p" * 64, 140, True, False),  # items left to fetch (an interrupted run)
    ],
)
def test_unchanged_needs_same_listing_same_settings_and_every_item_done(
    fingerprint: str, plan: str, done: int, unfinished: bool, unchanged: bool
) -> None:
    known = stamps.Unchanged("p" * 64)
    known.stamps = {7: stamps.Stamp("f" * 64, plan, 140, 1000, 140, 139, 1)}
    known.done = {7: done}
    known.open = {7} if unfinished else set()
    assert (known.unchanged(7, fingerprint) is not None) is unchanged
    assert known.unchanged(8, fingerprint) is None  # never planned here
    assert known.skipped == int(unchanged)


def test_put_many_replaces_files_and_read_stamps_finds_them(tmp_path: Path) -> None:
    stamp = stamps.Stamp("a" * 64, "b" * 64, 1, 2, 3, 3, 0)
    files = [(f"{i}/{stamps.FILE}", stamps.stamped(b'{"x": 1}\n', stamp)) for i in (1, 2)]
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / stamps.FILE).write_bytes(b'{"data_set": {}}')
    for group_sync in (True, False):
        store = LocalStore(tmp_path, group_sync=group_sync)
        assert anyio.run(store.put_many, files) == [None, None]
    assert anyio.run(stamps.read_stamps, store, [1, 2, 3, 4]) == {1: stamp, 2: stamp}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["1", "2", "3"] + [stamps.FILE] * 3


def test_a_file_that_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    (tmp_path / "2" / stamps.FILE).mkdir(parents=True)  # a directory where the file belongs
    files = [(f"{i}/{stamps.FILE}", b'{"x": %d}\n' % i) for i in (1, 2, 3)]
    first, failed, third = anyio.run(LocalStore(tmp_path).put_many, files)
    assert first is None and third is None
    assert failed is not None and "cannot write" in str(failed)
    assert json.loads((tmp_path / "3" / stamps.FILE).read_text()) == {"x": 3}
    assert not [p for p in tmp_path.rglob("*.part")]


# -- slots --------------------------------------------------------------------------------------


async def test_an_urgent_waiter_takes_the_next_free_slot_before_earlier_others() -> None:
    slots = PrioritySlots(2)
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        await slots.acquire(urgent=urgent)
        try:
            order.append(name)
            await anyio.sleep(0.01)
        finally:
            slots.release()

    await slots.acquire()
    await slots.acquire()
    async with anyio.create_task_group() as group:
        for name in ("image-1", "image-2"):
            group.start_soon(take, name, False)
            await anyio.sleep(0.001)
        group.start_soon(take, "rma", True)
        await anyio.sleep(0.001)
        assert slots.waiting == (1, 2) and slots.in_use == 2
        slots.release()
        slots.release()
    assert order == ["rma", "image-1", "image-2"]
    assert slots.in_use == 0


async def test_a_cancelled_waiter_gives_back_nothing_it_did_not_have() -> None:
    slots = PrioritySlots(1)
    await slots.acquire()
    with anyio.move_on_after(0.01):
        await slots.acquire(urgent=True)
    assert slots.waiting == (0, 0) and slots.in_use == 1
    slots.release()
    assert slots.in_use == 0
    with anyio.fail_after(1):
        await slots.acquire()
        assert slots.in_use == 1
        slots.release()


@pytest.mark.parametrize(
    ("done", "removed", "settled"),
    [
        (140, False, True),  # exactly what the listing planned: nothing to reconcile
        (141, False, False),  # more done items than planned: some image may be gone
        (140, True, False),  # a removed item may be listed again
    ],
)
def test_settled_means_nothing_for_a_sync_to_reconcile(
    done: int, removed: bool, settled: bool
) -> None:
    known = stamps.Unchanged("p" * 64)
    known.stamps = {7: stamps.Stamp("f" * 64, "p" * 64, 140, 1000, 140, 139, 1)}
    known.done = {7: done}
    known.removed = {7} if removed else set()
    assert known.settled(7) is settled
    assert not known.settled(8)  # no stamp
