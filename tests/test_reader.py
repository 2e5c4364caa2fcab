"""The reader API: pure decisions table-tested, then a real small mirror read back."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crawler.errors import UsageError
from crawler.reader import CorruptFileError, ReaderStats, open_mirror, sample_key
from crawler.reader.grouping import Row, image_members
from crawler.reader.layout import ItemPlace, item_place, tier_size, url_window
from tests.mirrors import CONNECTIVITY, ISH, build_mirror, done_items


@pytest.fixture(scope="module")
def mirror_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mirror(tmp_path_factory.mktemp("mirror") / "out")


@pytest.mark.parametrize(
    ("path", "place"),
    [
        ("100/section/ds4/0001_5.jpg", ItemPlace("100", "section", 4, None)),
        ("100/projection/ds0/0012_77.jpg", ItemPlace("100", "projection", 0, None)),
        ("100/section/ds2/tiles/0003_9/r001_c010.jpg", ItemPlace("100", "section", 2, (1, 10))),
        ("atlas_1/annotation/ds4/0001_5.jpg", ItemPlace("atlas_1", "annotation", 4, None)),
        ("100/section/ds2/tiles/0003_9/index.json", None),
        ("100/grid/projection_density_25.nrrd", None),
        ("100/unionizes.json", None),
    ],
)
def test_item_place(path: str, place: ItemPlace | None) -> None:
    assert item_place(path) == place


@pytest.mark.parametrize(
    ("url", "window"),
    [
        ("http://h/api/v2/section_image_download/1?downsample=4&range=0,923,0,987,0,4095",
         (0, 923, 0, 987, 0, 4095)),
        ("http://h/api/v2/section_image_download/1?downsample=4", None),
        ("http://h/api/v2/x/1?range=1,2,3", None),
    ],
)  # fmt: skip
def test_url_window(url: str, window: tuple[int, ...] | None) -> None:
    assert url_window(url) == window


def test_sample_key_and_tier_size() -> None:
    assert sample_key(100141599, 7, 102146103) == "100141599_0007_102146103"
    assert sample_key(1, 12345, 2) == "1_12345_2"
    assert [tier_size(1072, t) for t in (0, 1, 4)] == [1072, 536, 67]
    assert tier_size(1073, 1) == 537


def _row(id: int, path: str, kind: str = "section", fetched: int | None = None) -> Row:
    at = datetime(2026, 1, 1, 0, 0, fetched) if fetched is not None else None
    return Row(id, path, kind, 5, 10, "ab" * 32, f"http://h/x?range=0,1,0,1,0,{id}", at)


def test_image_members_one_sample_per_tier_whole_wins_latest_row_kept() -> None:
    rows = [
        _row(1, "9/section/ds4/0001_5.jpg", fetched=1),
        _row(2, "9/projection/ds4/0001_5.jpg", "projection"),
        _row(3, "9/section/ds2/tiles/0001_5/r000_c001.jpg"),
        _row(4, "9/section/ds2/tiles/0001_5/r000_c000.jpg"),
        _row(5, "9/section/ds4/tiles/0001_5/r000_c000.jpg"),  # a whole ds4 image exists
        _row(6, "9/section/ds4/0001_5.jpg", fetched=0),  # replanned, but fetched earlier
        _row(7, "9/grid/projection_density_25.nrrd", "grid"),
    ]
    found = image_members(rows, ["section", "projection"])
    assert list(found) == [4, 2]
    assert set(found[4]) == {"section", "projection"}
    assert [r.id for r, _ in found[4]["section"].rows] == [1]
    assert found[4]["section"].window == (0, 1, 0, 1, 0, 1)
    assert [r.id for r, _ in found[2]["section"].rows] == [4, 3]  # row-major tile order
    assert found[2]["section"].tiled and not found[4]["section"].tiled
    assert list(image_members(rows, ["section"], tiers=[2])) == [2]
    assert image_members(rows, ["expression"]) == {}


# -- a real mirror ----------------------------------------------------------------------------


def test_reader_yields_every_done_image_with_checked_bytes(mirror_dir: Path) -> None:
    items = {str(i["path"]): i for i in done_items(mirror_dir)}
    stats = ReaderStats()
    with open_mirror(mirror_dir) as mirror:
        samples = list(mirror.samples(stats=stats))
    whole = [p for p in items if "/ds4/" in p and p.endswith(".jpg")]
    tier4 = [s for s in samples if s.tier == 4]
    assert len(tier4) == sum(1 for p in whole if "/section/" in p) == 14
    assert len([s for s in samples if s.tier == 2]) == 2
    assert stats.samples == 16 and not stats.skipped and not stats.items
    for sample in tier4:
        kinds = {"section", "projection" if sample.data_set_id == CONNECTIVITY else "expression"}
        assert set(sample.members) == kinds
        for kind, member in sample.members.items():
            item = items[member.parts[0].relpath]
            assert member.sha256 == item["sha256"]
            data = sample.read_bytes(kind)
            assert data == (mirror_dir / str(item["path"])).read_bytes()
            assert hashlib.sha256(data).hexdigest() == item["sha256"]
            pixels = sample.pixels(kind)
            assert pixels.shape == (sample.height, sample.width, 3)


def test_metadata_describes_the_sample(mirror_dir: Path) -> None:
    with open_mirror(mirror_dir) as mirror:
        sample = next(iter(mirror.samples(data_sets=[CONNECTIVITY], tiers=[4])))
    records = json.loads((mirror_dir / str(CONNECTIVITY) / "dataset.json").read_text())
    image = next(i for i in records["section_images"] if i["id"] == sample.image_id)
    meta = sample.metadata()
    assert meta["key"] == sample_key(CONNECTIVITY, image["section_number"], image["id"])
    assert meta["width"] == -(-image["width"] // 16) and meta["height"] == -(-image["height"] // 16)
    assert meta["um_per_pixel"] == pytest.approx(image["resolution"] * 16)
    assert meta["plane_of_section"] == records["labels"]["plane_of_section"]
    assert meta["injection_structures"] == records["labels"]["injection_structures"]
    assert meta["products"] == [p["id"] for p in records["data_set"]["products"]]
    eq = records["data_set"]["equalization"]
    window = [
        eq[f"{colour}_{end}"] for colour in ("red", "green", "blue") for end in ("lower", "upper")
    ]
    assert meta["colour_window"] == window
    assert meta["alignment2d"] == image["alignment2d"]  # as the mirror's dataset.json has them
    assert meta["alignment3d"] == records["data_set"]["alignment3d"]
    assert meta["alignment2d"]["section_image_id"] == image["id"]
    assert set(meta["sha256"]) == {"jpg", "projection.jpg"}


def test_filters_by_kind_data_set_and_sections(mirror_dir: Path) -> None:
    with open_mirror(mirror_dir) as mirror:
        ish = list(mirror.samples(data_sets=[ISH], kinds=["expression"]))
        some = list(mirror.samples(sections=(2, 3), tiers=[4]))
    assert ish and all(set(s.members) == {"expression"} for s in ish)
    assert {s.section_number for s in some} <= {2, 3} and len(some) >= 2


def test_tiles_are_stitched_on_their_grid(mirror_dir: Path) -> None:
    with open_mirror(mirror_dir) as mirror:
        sample = next(iter(mirror.samples(tiers=[2])))
    member = sample.members["section"]
    assert member.tiled and member.sha256 is None
    stitched = sample.pixels()
    assert stitched.shape == (sample.height, sample.width, 3)
    for part in member.parts:
        row, col = part.tile or (0, 0)
        tile = np.asarray(Image.open(part.path).convert("RGB"))
        top, left = row * 64, col * 64
        assert (stitched[top : top + tile.shape[0], left : left + tile.shape[1]] == tile).all()
    decoded = Image.open(io.BytesIO(sample.read_bytes()))
    assert decoded.size == (sample.width, sample.height)


@pytest.fixture
def damaged(mirror_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the mirror to break."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(mirror_dir, copy)
    yield copy


def test_missing_failed_and_corrupt_files(damaged: Path) -> None:
    items = sorted(done_items(damaged), key=lambda i: int(i["id"]))  # type: ignore[call-overload]
    sections = [i for i in items if i["kind"] == "section" and "/ds4/" in str(i["path"])]
    (damaged / str(sections[0]["path"])).unlink()
    with sqlite3.connect(damaged / "manifest.sqlite") as db:
        db.execute("UPDATE items SET status = 'failed' WHERE id = ?", (sections[1]["id"],))
        db.execute("UPDATE items SET status = 'removed' WHERE id = ?", (sections[2]["id"],))
    corrupt = damaged / str(sections[3]["path"])
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    stats = ReaderStats()
    with open_mirror(damaged) as mirror:
        samples = list(mirror.samples(tiers=[4], stats=stats))
    assert stats.items == {"failed": 1, "removed": 1}
    assert stats.skipped == {"missing_file": 1, "no_section_image": 2}
    assert len(samples) == 14 - 3
    bad = next(s for s in samples if s.image_id == sections[3]["image_id"])
    with pytest.raises(CorruptFileError, match="verify --repair"):
        bad.read_bytes()


def test_open_mirror_refuses_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no manifest"):
        open_mirror(tmp_path)
