"""``allen-mirror export``: decisions table-tested; shards loaded back with the real libraries."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from crawler.errors import UsageError
from crawler.export.omezarr import halve, level_shapes
from crawler.export.plan import (
    check_fractions,
    is_shard_name,
    parse_kinds,
    shard_name,
    shard_of,
    split_of,
)
from crawler.reader import open_mirror
from tests.conftest import run_cli
from tests.mirrors import CONNECTIVITY, ISH, build_mirror, done_items

# Seeds that put the two data sets in different splits with --val-fraction 0.5 (checked below).
SEED = next(s for s in range(100) if split_of(CONNECTIVITY, s, 0.5, 0) != split_of(ISH, s, 0.5, 0))


@pytest.fixture(scope="module")
def mirror_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mirror(tmp_path_factory.mktemp("mirror") / "out")


def export(capsys: pytest.CaptureFixture[str], out: Path, dest: Path, *extra: str) -> object:
    return run_cli(capsys, "export", "--out", str(out), "--to", str(dest), "--no-progress", *extra)


# -- decisions --------------------------------------------------------------------------------


def test_split_is_a_pure_function_of_data_set_and_seed() -> None:
    ids = range(1, 20001)
    splits = [split_of(i, 0, 0.1, 0.2) for i in ids]
    assert splits == [split_of(i, 0, 0.1, 0.2) for i in ids]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert share["val"] == pytest.approx(0.1, abs=0.01)
    assert share["test"] == pytest.approx(0.2, abs=0.01)
    assert splits != [split_of(i, 1, 0.1, 0.2) for i in ids]
    assert {split_of(i, 0, 0.0, 0.0) for i in ids} == {"train"}
    assert {split_of(i, 0, 1.0, 0.0) for i in ids} == {"val"}


@pytest.mark.parametrize(
    ("position", "size", "shard"), [(0, 1000, 0), (999, 1000, 0), (1000, 1000, 1), (5, 2, 2)]
)
def test_shard_of(position: int, size: int, shard: int) -> None:
    assert shard_of(position, size) == shard


def test_names_kinds_and_fractions() -> None:
    assert shard_name("val", 3, "webdataset") == "val-00003.tar"
    assert shard_name("train", 12, "parquet") == "train-00012.parquet"
    assert is_shard_name("test-00000.tar") and not is_shard_name("index.parquet")
    assert not is_shard_name(".train-00000.tar.part")
    assert parse_kinds("expression, section") == ("section", "expression")
    with pytest.raises(UsageError, match="unknown kind 'nissl'"):
        parse_kinds("section,nissl")
    for val, test in ((-0.1, 0), (0.5, 0.6), (0, 1.5)):
        with pytest.raises(UsageError):
            check_fractions(val, test)


@pytest.mark.parametrize(
    ("name", "size"), [("a.jpg", 0), ("1_0001_2.projection.jpg", 177747), ("x" * 100, 5)]
)
def test_tar_header_is_what_tarfile_writes(name: str, size: int) -> None:
    from crawler.export.shards import tar_header

    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
    info.uname = info.gname = ""
    assert tar_header(name, size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def test_pyramid_shapes_and_halving() -> None:
    assert level_shapes(1000, 300) == [(1000, 300), (500, 150), (250, 75)]
    assert level_shapes(100, 80) == [(100, 80)]
    block = np.array([[[0, 4, 9], [4, 8, 9], [1, 1, 1]]], dtype=np.uint8)
    assert halve(block).tolist() == [[[4, 9], [1, 1]]]
    assert halve(block, nearest=True).tolist() == [[[0, 9], [1, 1]]]


# -- webdataset --------------------------------------------------------------------------------


# webdataset's tar iterator leaves closing its shard file to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_webdataset_shards_hold_the_mirrored_files(
    capsys: pytest.CaptureFixture[str], mirror_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "wds"
    result = export(capsys, mirror_dir, dest, "--shard-size", "5", "--tier", "4",
                    "--val-fraction", "0.5", "--seed", str(SEED))  # fmt: skip
    assert result.code == 0, result.err  # type: ignore[attr-defined]
    stats = json.loads((dest / "_stats.json").read_text())
    assert sum(stats["samples"].values()) == 14
    splits = {split: n for split, n in stats["samples"].items() if n}
    assert sorted(splits.values()) == [7, 7]  # one data set each: no experiment straddles
    shards = sorted(p.name for p in dest.glob("*.tar"))
    assert shards == sorted(f"{s}-{i:05d}.tar" for s in splits for i in range(2))

    import webdataset as wds

    files = {str(i["path"]): i for i in done_items(mirror_dir)}
    by_key = {}
    for name in shards:
        split = name.split("-")[0]
        for sample in wds.WebDataset(str(dest / name), shardshuffle=False):
            meta = json.loads(sample["json"])
            assert split == split_of(meta["data_set_id"], SEED, 0.5, 0)
            by_key[sample["__key__"]] = (sample, meta)
    assert len(by_key) == 14
    for key, (sample, meta) in by_key.items():
        assert key == meta["key"]
        other = "projection" if meta["data_set_id"] == CONNECTIVITY else "expression"
        name = f"{meta['section_number']:04d}_{meta['image_id']}.jpg"
        for kind, member in (("section", "jpg"), (other, f"{other}.jpg")):
            path = f"{meta['data_set_id']}/{kind}/ds4/{name}"
            assert sample[member] == (mirror_dir / path).read_bytes()
            assert meta["sha256"][member] == files[path]["sha256"]
    index = pq.read_table(dest / "index.parquet").to_pylist()
    assert sorted(r["key"] for r in index) == sorted(by_key)
    assert all(r["shard"] in (0, 1) and r["split"] in splits for r in index)

    from datasets import load_dataset

    split = next(iter(splits))
    loaded = load_dataset(
        "webdataset",
        data_files={split: sorted(str(p) for p in dest.glob(f"{split}-*.tar"))},
        split=split,
        cache_dir=str(tmp_path / "hf"),
    )
    assert len(loaded) == 7
    first = loaded[0]
    assert first["jpg"].size == (first["json"]["width"], first["json"]["height"])


def test_members_are_adjacent_and_shards_byte_identical(
    capsys: pytest.CaptureFixture[str], mirror_dir: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for dest in (first, second):
        assert export(capsys, mirror_dir, dest, "--val-fraction", "0").code == 0  # type: ignore[attr-defined]
    names = sorted(p.name for p in first.iterdir())
    assert names == ["_stats.json", "index.parquet", "train-00000.tar"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    with tarfile.open(first / "train-00000.tar") as tar:
        members = tar.getmembers()
    keys = [m.name.split(".", 1)[0] for m in members]
    assert all(keys[i] == keys[i + 1] or keys[i + 1] not in keys[:i] for i in range(len(keys) - 1))
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(0, 0, 0, "", 0o644)}
    for key in set(keys):
        names_of = [m.name.split(".", 1)[1] for m in members if m.name.startswith(key + ".")]
        other = "projection.jpg" if key.startswith(str(CONNECTIVITY)) else "expression.jpg"
        assert names_of == ["jpg", other, "json"]


def test_rerun_with_fewer_shards_leaves_no_stale_shard(
    capsys: pytest.CaptureFixture[str], mirror_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "wds"
    assert export(capsys, mirror_dir, dest, "--shard-size", "4", "--val-fraction", "0").code == 0  # type: ignore[attr-defined]
    assert len(list(dest.glob("train-*.tar"))) == 4
    (dest / ".train-00009.tar.part").write_bytes(b"half")  # an interrupted export's leftover
    assert export(capsys, mirror_dir, dest, "--val-fraction", "0").code == 0  # type: ignore[attr-defined]
    assert sorted(p.name for p in dest.iterdir()) == [
        "_stats.json",
        "index.parquet",
        "train-00000.tar",
    ]


def test_a_corrupt_file_stops_the_export_without_a_truncated_shard(
    capsys: pytest.CaptureFixture[str], mirror_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(mirror_dir, copy)
    items = sorted(done_items(copy), key=lambda i: int(i["id"]))  # type: ignore[call-overload]
    path = copy / str(items[5]["path"])
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    with sqlite3.connect(copy / "manifest.sqlite") as db:
        db.execute("UPDATE items SET status = 'failed' WHERE id = ?", (items[0]["id"],))
    dest = tmp_path / "wds"
    result = export(capsys, copy, dest, "--shard-size", "2", "--val-fraction", "0")
    assert result.code == 1  # type: ignore[attr-defined]
    err = result.err.strip()  # type: ignore[attr-defined]
    assert err.count("\n") == 0 and str(path) in err and "verify --repair" in err
    leftovers = sorted(p.name for p in dest.iterdir())
    assert not any(name.endswith(".part") for name in leftovers)
    assert "index.parquet" not in leftovers and "_stats.json" not in leftovers
    for name in leftovers:  # shards finished before the bad file are whole
        with tarfile.open(dest / name) as tar:
            assert len(tar.getmembers()) == 2 * 3


# -- parquet -----------------------------------------------------------------------------------


def test_parquet_shards_hold_bytes_beside_metadata(
    capsys: pytest.CaptureFixture[str], mirror_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "pq"
    result = export(capsys, mirror_dir, dest, "--format", "parquet", "--tier", "4",
                    "--val-fraction", "0", "--shard-size", "10")  # fmt: skip
    assert result.code == 0, result.err  # type: ignore[attr-defined]
    shards = sorted(dest.glob("train-*.parquet"))
    assert [p.name for p in shards] == ["train-00000.parquet", "train-00001.parquet"]
    rows = [r for p in shards for r in pq.read_table(p).to_pylist()]
    assert len(rows) == 14
    for row in rows:
        sha = json.loads(row["sha256"])
        assert hashlib.sha256(row["jpg"]).hexdigest() == sha["jpg"]
        if row["data_set_id"] == ISH:
            assert row["projection_jpg"] is None and row["expression_jpg"] is not None
        else:
            assert hashlib.sha256(row["projection_jpg"]).hexdigest() == sha["projection.jpg"]

    from datasets import load_dataset

    loaded = load_dataset(
        "parquet",
        data_files=[str(p) for p in shards],
        split="train",
        cache_dir=str(tmp_path / "hf"),
    )
    assert sorted(loaded["key"]) == sorted(r["key"] for r in rows)


# -- ome-zarr ----------------------------------------------------------------------------------


def test_ome_zarr_images_read_back_with_ome_zarr(
    capsys: pytest.CaptureFixture[str], mirror_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "zarr"
    result = export(capsys, mirror_dir, dest, "--format", "ome-zarr", "--val-fraction", "0",
                    "--dataset", str(CONNECTIVITY), "--tier", "2")  # fmt: skip
    assert result.code == 0, result.err  # type: ignore[attr-defined]
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    with open_mirror(mirror_dir) as mirror:
        samples = list(mirror.samples(data_sets=[CONNECTIVITY], tiers=[2]))
    assert len(samples) == 2 and all(s.members["section"].tiled for s in samples)
    assert sorted(p.name for p in (dest / "train").iterdir()) == sorted(
        f"{s.key}.ome.zarr" for s in samples
    )
    for sample in samples:
        reader = Reader(parse_url(str(dest / "train" / f"{sample.key}.ome.zarr")))
        node = next(iter(reader()))
        level0 = np.asarray(node.data[0])
        assert level0.shape == (6, sample.height, sample.width)
        assert (level0[:3] == sample.pixels().transpose(2, 0, 1)).all()
        assert (level0[3:] == sample.pixels("projection").transpose(2, 0, 1)).all()
        scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
        um = sample.um_per_pixel
        assert scales[0] == [1.0, um, um] and scales[1] == [1.0, 2 * um, 2 * um]
        assert np.asarray(node.data[1]).shape == (6, -(-sample.height // 2), -(-sample.width // 2))
        assert node.metadata["name"] == sample.key
