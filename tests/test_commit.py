"""Group commit: many bodies stored with few threads, each caller told about its own file.

Every behaviour is checked for both committers: the one that writes on the event loop (local
disks) and the one that leaves all file work to threads (network filesystems).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from crawler import commit
from crawler.client import ApiClient
from crawler.commit import Committer, LoopCommitter, ThreadCommitter, make_committer
from crawler.config import load_settings
from crawler.errors import StorageError
from crawler.store import PartWriter, part_path


def _writer(dest: Path, body: bytes) -> PartWriter:
    writer = PartWriter(dest)
    writer.add(body)
    return writer


KINDS: dict[str, Callable[..., Committer]] = {
    "loop": lambda group_sync=True: LoopCommitter(group_sync=group_sync),
    "threads": lambda group_sync=True: ThreadCommitter(1, group_sync=group_sync),
}


@pytest.fixture(params=sorted(KINDS))
def new_committer(request: pytest.FixtureRequest) -> Callable[..., Committer]:
    """Makes committers of one kind (each test runs for both)."""
    return KINDS[request.param]


@pytest.mark.parametrize(("kind", "threads"), [("loop", 1), ("threads", 2)])
async def test_concurrent_commits_share_a_few_threads(
    tmp_path: Path, kind: str, threads: int
) -> None:
    committer: Committer = LoopCommitter() if kind == "loop" else ThreadCommitter(threads=2)
    bodies = {tmp_path / f"d{n % 7}" / f"{n}.jpg": os.urandom(100 + n) for n in range(200)}
    results = {}

    async def one(dest: Path, body: bytes) -> None:
        results[dest] = await committer.commit(_writer(dest, body))

    before = threading.active_count()
    try:
        async with anyio.create_task_group() as group:
            for dest, body in bodies.items():
                group.start_soon(one, dest, body)
        assert threading.active_count() - before == threads  # not one thread per file
    finally:
        committer.close()
    for dest, body in bodies.items():
        assert dest.read_bytes() == body
        assert results[dest].size == len(body)
        assert results[dest].sha256 == hashlib.sha256(body).hexdigest()
        assert not part_path(dest).exists()


async def test_a_failed_file_fails_alone(
    tmp_path: Path, new_committer: Callable[..., Committer]
) -> None:
    blocked = tmp_path / "blocked.jpg"
    (blocked / "inside").mkdir(parents=True)  # a non-empty directory where the file should go
    committer = new_committer()
    outcomes: dict[str, object] = {}

    async def one(name: str, dest: Path) -> None:
        try:
            outcomes[name] = await committer.commit(_writer(dest, b"body"))
        except StorageError as exc:
            outcomes[name] = exc

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(one, "bad", blocked)
            group.start_soon(one, "good", tmp_path / "ok" / "y.jpg")
    finally:
        committer.close()
    assert isinstance(outcomes["bad"], StorageError)
    assert str(outcomes["bad"]).startswith(f"cannot write {blocked}")
    assert not part_path(blocked).exists()
    assert (tmp_path / "ok" / "y.jpg").read_bytes() == b"body"


async def test_a_failed_fsync_leaves_no_part_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_committer: Callable[..., Committer]
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    dest = tmp_path / "z.jpg"
    committer = new_committer()
    try:
        with pytest.raises(StorageError, match="disk full"):
            await committer.commit(_writer(dest, b"x" * 5000))
    finally:
        committer.close()
    assert not dest.exists() and not part_path(dest).exists()


async def test_a_cancelled_caller_leaves_a_whole_file_or_none(
    tmp_path: Path, new_committer: Callable[..., Committer]
) -> None:
    committer = new_committer()
    dest = tmp_path / "c.jpg"
    writer = _writer(dest, b"y" * 10_000)
    try:
        with anyio.move_on_after(0):
            await committer.commit(writer)
        await writer.discard()  # what a cancelled download does: must not race the thread
        with anyio.fail_after(5):  # one thread, first in first out: the cancelled one is done
            await committer.commit(_writer(tmp_path / "after.jpg", b"z"))
        assert not part_path(dest).exists()
    finally:
        committer.close()
    assert dest.read_bytes() == b"y" * 10_000


def _record_steps(monkeypatch: pytest.MonkeyPatch, syncfs_fails: bool = False) -> list[tuple]:
    """Every write, fsync, syncfs and rename the commit threads make, in order."""
    steps: list[tuple] = []
    real = {name: getattr(PartWriter, name) for name in ("write_rest", "sync", "finish")}

    def wrap(name: str):  # type: ignore[no-untyped-def]
        def step(self: PartWriter):  # type: ignore[no-untyped-def]
            result = real[name](self)
            steps.append((name, self.dest))
            return result

        return step

    for name in real:
        monkeypatch.setattr(PartWriter, name, wrap(name))
    real_syncfs = commit.SYNCFS

    def syncfs(fd: int) -> None:
        if syncfs_fails or real_syncfs is None:
            raise OSError(5, "Input/output error")
        real_syncfs(fd)
        steps.append(("syncfs", None))

    monkeypatch.setattr(commit, "SYNCFS", syncfs)
    return steps


def _assert_flushed_before_renamed(steps: list[tuple], dests: list[Path]) -> None:
    for dest in dests:
        wrote = steps.index(("write_rest", dest))
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


async def _commit_many(committer: Committer, tmp_path: Path, count: int) -> list[Path]:
    dests = [tmp_path / f"g{n % 3}" / f"{n}.jpg" for n in range(count)]

    async def one(dest: Path) -> None:
        await committer.commit(_writer(dest, dest.name.encode() * 300))

    try:
        async with anyio.create_task_group() as group:
            for dest in dests:
                group.start_soon(one, dest)
    finally:
        committer.close()
    for dest in dests:
        assert dest.read_bytes() == dest.name.encode() * 300
    return dests


@pytest.mark.skipif(commit.SYNCFS is None, reason="syncfs(2) is Linux-only")
async def test_a_batch_is_flushed_once_per_filesystem_before_any_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_committer: Callable[..., Committer]
) -> None:
    steps = _record_steps(monkeypatch)
    dests = await _commit_many(new_committer(), tmp_path, 60)
    _assert_flushed_before_renamed(steps, dests)
    syncfs_calls = sum(1 for name, _ in steps if name == "syncfs")
    fsync_calls = sum(1 for name, _ in steps if name == "sync")
    assert syncfs_calls >= 1
    assert syncfs_calls + fsync_calls < len(dests)  # batches shared their flushes


async def test_a_failed_syncfs_falls_back_to_one_fsync_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_committer: Callable[..., Committer]
) -> None:
    steps = _record_steps(monkeypatch, syncfs_fails=True)
    dests = await _commit_many(new_committer(), tmp_path, 40)
    _assert_flushed_before_renamed(steps, dests)
    assert sum(1 for name, _ in steps if name == "sync") == len(dests)


async def test_without_group_sync_every_file_gets_its_own_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_committer: Callable[..., Committer]
) -> None:
    steps = _record_steps(monkeypatch)
    dests = await _commit_many(new_committer(group_sync=False), tmp_path, 40)
    _assert_one_fsync_per_file(steps, dests)


async def test_group_sync_false_from_the_environment_reaches_every_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = _record_steps(monkeypatch)
    settings = load_settings(None, {}, environ={"ALLEN_MIRROR_GROUP_SYNC": "false"})
    async with ApiClient.open(settings) as client:
        dests = await _commit_many(client.committer, tmp_path, 40)
    _assert_one_fsync_per_file(steps, dests)


async def test_on_a_local_disk_the_loop_writes_and_renames_and_one_thread_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[tuple[str, str]] = []
    for name in ("write_rest", "sync", "finish"):
        real = getattr(PartWriter, name)

        def step(self: PartWriter, _real=real, _name=name):  # type: ignore[no-untyped-def]
            threads.append((_name, threading.current_thread().name))
            return _real(self)

        monkeypatch.setattr(PartWriter, name, step)
    monkeypatch.setattr(commit, "SYNCFS", None)  # one fsync per file: every flush is visible
    await _commit_many(LoopCommitter(), tmp_path, 30)
    loop_thread = threading.current_thread().name
    assert {thread for name, thread in threads if name in ("write_rest", "finish")} == {loop_thread}
    assert {thread for name, thread in threads if name == "sync"} == {"allen-mirror-flush"}


async def test_a_large_body_is_written_by_the_flushing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commit, "INLINE_BYTES", 1000)
    writers: dict[str, str] = {}
    real = PartWriter.write_rest

    def write_rest(self: PartWriter) -> None:
        writers[self.dest.name] = threading.current_thread().name
        real(self)

    monkeypatch.setattr(PartWriter, "write_rest", write_rest)
    committer = LoopCommitter()
    big, small = os.urandom(5000), b"small"
    try:
        stored = await committer.commit(_writer(tmp_path / "big.jpg", big))
        await committer.commit(_writer(tmp_path / "small.jpg", small))
    finally:
        committer.close()
    assert writers == {
        "big.jpg": "allen-mirror-flush",
        "small.jpg": threading.current_thread().name,
    }
    assert (tmp_path / "big.jpg").read_bytes() == big
    assert stored.sha256 == hashlib.sha256(big).hexdigest()


def test_the_committer_writes_on_the_loop_only_on_a_local_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mountinfo = tmp_path / "mountinfo"
    monkeypatch.setattr("crawler.disks.MOUNTINFO", mountinfo)
    line = "36 25 0:{n} / {point} rw,relatime shared:1 - {kind} server:/export rw\n"
    mountinfo.write_text(
        line.format(n=1, point="/", kind="ext4") + line.format(n=2, point="/data", kind="nfs4")
    )
    assert isinstance(make_committer(Path("/home/me/mirror")), LoopCommitter)
    assert isinstance(make_committer(Path("/data/lab/mirror")), ThreadCommitter)
    mountinfo.unlink()  # not Linux, or /proc not mounted: we cannot tell, so threads
    assert isinstance(make_committer(Path("/home/me/mirror")), ThreadCommitter)


def _count_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch the flushing thread is handed."""
    sizes: list[int] = []
    real = commit._Flusher.flush

    def flush(self: commit._Flusher, writers, errors):  # type: ignore[no-untyped-def]
        sizes.append(len(writers))
        real(self, writers, errors)

    monkeypatch.setattr(commit._Flusher, "flush", flush)
    return sizes


async def test_files_arriving_together_are_flushed_as_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _count_batches(monkeypatch)
    committer = LoopCommitter(linger=0.5)
    bodies = {tmp_path / f"{n}.jpg": os.urandom(50 + n) for n in range(20)}

    async def one(dest: Path, body: bytes, delay: float) -> None:
        await anyio.sleep(delay)
        await committer.commit(_writer(dest, body))

    try:
        async with anyio.create_task_group() as group:
            for n, (dest, body) in enumerate(bodies.items()):
                group.start_soon(one, dest, body, n * 0.005)  # over ~0.1 s, inside the linger
    finally:
        committer.close()
    assert sizes == [20]
    assert all(dest.read_bytes() == body for dest, body in bodies.items())


async def test_a_lone_file_lands_after_the_linger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _count_batches(monkeypatch)
    committer = LoopCommitter(linger=0.05)
    try:
        with anyio.fail_after(5):
            started = anyio.current_time()
            await committer.commit(_writer(tmp_path / "one.jpg", b"x"))
            waited = anyio.current_time() - started
    finally:
        committer.close()
    assert sizes == [1]
    assert waited >= 0.04  # it waited for company
    assert (tmp_path / "one.jpg").read_bytes() == b"x"


async def test_a_full_batch_does_not_wait_for_the_linger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _count_batches(monkeypatch)
    monkeypatch.setattr(commit, "BATCH_FILES", 8)
    committer = LoopCommitter(linger=3600)
    try:
        with anyio.fail_after(10):  # would hang for the hour's linger
            await _commit_many(committer, tmp_path, 16)
    finally:
        committer.close()
    assert sizes == [8, 8]


async def test_closing_sends_what_cancelled_callers_left(tmp_path: Path) -> None:
    committer = LoopCommitter(linger=3600)
    dest = tmp_path / "left.jpg"
    with anyio.move_on_after(0.05):
        await committer.commit(_writer(dest, b"left behind"))
    assert not dest.exists()  # still gathering
    thread = committer._thread
    committer.close()
    assert thread is not None
    thread.join(timeout=10)
    await anyio.sleep(0.05)  # the thread hands the batch back; the loop renames it
    assert dest.read_bytes() == b"left behind"
