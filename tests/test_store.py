"""The local store: parts written, flushed, then renamed in batches; each file gets its verdict.

Every commit is one thread hand-over for the whole batch; a file reaches its final name only
after a flush (one syncfs per filesystem for a batch, or one fsync per file).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from crawler import localstore
from crawler.config import load_settings
from crawler.errors import DiskFullError, StorageError
from crawler.localstore import OWN_SUFFIX, LocalPart, LocalStore
from crawler.output import open_store
from crawler.store import Part, StoredFile


def part_file(dest: Path) -> Path:
    return dest.with_name(dest.name + OWN_SUFFIX)


async def received(store: LocalStore, path: str, body: bytes) -> Part:
    """A part that received ``body`` whole, ready to commit."""
    async with store.part(path) as part:
        await part.write(body)
    return part


async def commit_many(store: LocalStore, root: Path, count: int) -> list[Path]:
    """``count`` files over three directories, committed in one batch; returns their paths."""
    paths = [f"g{n % 3}/{n}.jpg" for n in range(count)]
    parts = [await received(store, path, Path(path).name.encode() * 300) for path in paths]
    results = await store.commit(parts)
    assert all(isinstance(result, StoredFile) for result in results)
    dests = [root / path for path in paths]
    for dest in dests:
        assert dest.read_bytes() == dest.name.encode() * 300
    return dests


async def test_a_batch_lands_whole_with_one_thread_hand_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hand_overs = 0
    real = anyio.to_thread.run_sync

    async def counting(function, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal hand_overs
        hand_overs += 1
        return await real(function, *args, **kwargs)

    store = LocalStore(tmp_path)
    bodies = {f"d{n % 7}/{n}.jpg": os.urandom(100 + n) for n in range(200)}
    parts = [await received(store, path, body) for path, body in bodies.items()]
    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    results = await store.commit(parts)
    assert hand_overs == 1  # not one per file
    for (path, body), result in zip(bodies.items(), results, strict=True):
        assert (tmp_path / path).read_bytes() == body
        assert result == StoredFile(size=len(body), sha256=hashlib.sha256(body).hexdigest())
        assert not part_file(tmp_path / path).exists()


async def test_a_failed_file_fails_alone(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked.jpg"
    (blocked / "inside").mkdir(parents=True)  # a non-empty directory where the file should go
    store = LocalStore(tmp_path)
    bad, good = await store.commit(
        [await received(store, "blocked.jpg", b"body"), await received(store, "ok/y.jpg", b"body")]
    )
    assert isinstance(bad, StorageError) and not isinstance(bad, DiskFullError)
    assert str(bad).startswith(f"cannot write {blocked}")
    assert not part_file(blocked).exists()
    assert isinstance(good, StoredFile)
    assert (tmp_path / "ok" / "y.jpg").read_bytes() == b"body"


async def test_a_full_disk_stops_the_batch_and_leaves_no_part_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    monkeypatch.setattr(localstore, "SYNCFS", None)
    store = LocalStore(tmp_path)
    part = await received(store, "z.jpg", b"x" * 5000)
    with pytest.raises(DiskFullError, match="disk full"):
        await store.commit([part])
    assert not (tmp_path / "z.jpg").exists() and not part_file(tmp_path / "z.jpg").exists()


async def test_a_cancelled_commit_leaves_a_whole_file_or_none(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    part = await received(store, "c.jpg", b"y" * 10_000)
    with anyio.move_on_after(0):
        await store.commit([part])
    dest = tmp_path / "c.jpg"
    assert not dest.exists() or dest.read_bytes() == b"y" * 10_000
    assert not part_file(dest).exists()


async def test_a_large_body_is_written_while_it_arrives_and_a_failed_one_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localstore, "SPILL_BYTES", 1000)
    store = LocalStore(tmp_path)
    dest = tmp_path / "big.jpg"
    big = os.urandom(5000)
    async with store.part("big.jpg") as part:
        await part.write(big[:2500])
        assert part_file(dest).stat().st_size == 2500  # on disk before the body is complete
        await part.write(big[2500:])
    [stored] = await store.commit([part])
    assert dest.read_bytes() == big
    assert stored == StoredFile(size=5000, sha256=hashlib.sha256(big).hexdigest())
    with pytest.raises(RuntimeError):
        async with store.part("cut.jpg") as part:
            await part.write(big)
            assert part_file(tmp_path / "cut.jpg").exists()
            raise RuntimeError("the body was cut short")
    assert not part_file(tmp_path / "cut.jpg").exists() and not (tmp_path / "cut.jpg").exists()


def _record_steps(monkeypatch: pytest.MonkeyPatch, syncfs_fails: bool = False) -> list[tuple]:
    """Every write, fsync, syncfs and rename the store's thread makes, in order."""
    steps: list[tuple] = []
    real = {name: getattr(LocalPart, name) for name in ("write_buffer", "sync", "finish")}

    def wrap(name: str):  # type: ignore[no-untyped-def]
        def step(self: LocalPart):  # type: ignore[no-untyped-def]
            result = real[name](self)
            steps.append((name, Path(self.dest)))
            return result

        return step

    for name in real:
        monkeypatch.setattr(LocalPart, name, wrap(name))
    real_syncfs = localstore.SYNCFS

    def syncfs(fd: int) -> None:
        if syncfs_fails or real_syncfs is None:
            raise OSError(5, "Input/output error")
        real_syncfs(fd)
        steps.append(("syncfs", None))

    monkeypatch.setattr(localstore, "SYNCFS", syncfs)
    return steps


def _assert_flushed_before_renamed(steps: list[tuple], dests: list[Path]) -> None:
    for dest in dests:
        wrote = steps.index(("write_buffer", dest))
        renamed = steps.index(("finish", dest))
        flushes = [
            n
            for n, (name, target) in enumerate(steps)
            if name == "syncfs" or (name == "sync" and target == dest)
        ]
        assert any(wrote < n < renamed for n in flushes), (dest, steps)


def _assert_one_fsync_per_file(steps: list[tuple], dests: list[Path]) -> None:
    _assert_flushed_before_renamed(steps, dests)
    assert sum(1 for name, _ in steps if name == "sync") == len(dests)
    assert not any(name == "syncfs" for name, _ in steps)


@pytest.mark.skipif(localstore.SYNCFS is None, reason="syncfs(2) is Linux-only")
async def test_a_batch_is_flushed_once_per_filesystem_before_any_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = _record_steps(monkeypatch)
    dests = await commit_many(LocalStore(tmp_path), tmp_path, 60)
    _assert_flushed_before_renamed(steps, dests)
    assert sum(1 for name, _ in steps if name == "syncfs") == 1  # one filesystem here
    assert not any(name == "sync" for name, _ in steps)


async def test_a_failed_syncfs_falls_back_to_one_fsync_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = _record_steps(monkeypatch, syncfs_fails=True)
    dests = await commit_many(LocalStore(tmp_path), tmp_path, 40)
    _assert_one_fsync_per_file(steps, dests)


async def test_without_group_sync_every_file_gets_its_own_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = _record_steps(monkeypatch)
    dests = await commit_many(LocalStore(tmp_path, group_sync=False), tmp_path, 40)
    _assert_one_fsync_per_file(steps, dests)


async def test_group_sync_false_from_the_environment_reaches_the_run_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = _record_steps(monkeypatch)
    settings = load_settings(None, {"out": tmp_path}, environ={"ALLEN_MIRROR_GROUP_SYNC": "false"})
    async with open_store(settings) as store:
        dests = await commit_many(store, tmp_path, 40)
    _assert_one_fsync_per_file(steps, dests)


async def test_without_fsync_nothing_is_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = _record_steps(monkeypatch)
    await commit_many(LocalStore(tmp_path, fsync=False), tmp_path, 10)
    assert not any(name in ("sync", "syncfs") for name, _ in steps)


async def test_sizes_stat_through_directory_descriptors_in_the_order_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sizes come back in the order asked, across directories, with None for a missing file,
    a missing directory and a path through a file; more directories than stay open at once
    change nothing."""
    monkeypatch.setattr(localstore, "_OPEN_FOLDERS", 2)
    for folder, count in (("a/x", 3), ("b", 2), ("c/y/z", 1)):
        (tmp_path / folder).mkdir(parents=True)
        for n in range(count):
            (tmp_path / folder / f"{n}.jpg").write_bytes(b"j" * (n + 1) * 10)
    (tmp_path / "top.json").write_bytes(b"{}")
    asked = ["b/1.jpg", "a/x/0.jpg", "gone/0.jpg", "a/x/2.jpg", "c/y/z/0.jpg", "a/x/9.jpg",
             "top.json", "b/0.jpg", "top.json/0.jpg", "a/x/1.jpg"]  # fmt: skip
    sizes = await LocalStore(tmp_path).sizes(asked)
    assert sizes == [20, 10, None, 30, 10, None, 2, 10, None, 20]
    assert localstore.stat_sizes(str(tmp_path), asked) == sizes
    opened: list[str] = []
    real_open = os.open

    def counted(path: str, flags: int, *args: Any, **kwargs: Any) -> int:
        opened.append(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", counted)
    localstore.stat_sizes(str(tmp_path), ["a/x/0.jpg", "a/x/1.jpg", "a/x/2.jpg"])
    assert len(opened) == 1  # one descriptor for a directory's files
