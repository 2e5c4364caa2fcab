"""Group commit: many bodies stored by a few threads, each caller told about its own file."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import anyio
import pytest

from crawler.commit import Committer
from crawler.errors import StorageError
from crawler.store import PartWriter, part_path


def _writer(dest: Path, body: bytes) -> PartWriter:
    writer = PartWriter(dest)
    writer.add(body)
    return writer


async def test_concurrent_commits_share_a_few_threads(tmp_path: Path) -> None:
    committer = Committer(threads=2)
    bodies = {tmp_path / f"d{n % 7}" / f"{n}.jpg": os.urandom(100 + n) for n in range(200)}
    results = {}

    async def one(dest: Path, body: bytes) -> None:
        results[dest] = await committer.commit(_writer(dest, body))

    before = threading.active_count()
    try:
        async with anyio.create_task_group() as group:
            for dest, body in bodies.items():
                group.start_soon(one, dest, body)
        assert threading.active_count() - before == 2  # not one thread per file
    finally:
        committer.close()
    for dest, body in bodies.items():
        assert dest.read_bytes() == body
        assert results[dest].size == len(body)
        assert results[dest].sha256 == hashlib.sha256(body).hexdigest()
        assert not part_path(dest).exists()


async def test_a_failed_file_fails_alone(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked.jpg"
    (blocked / "inside").mkdir(parents=True)  # a non-empty directory where the file should go
    committer = Committer(threads=1)
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    dest = tmp_path / "z.jpg"
    committer = Committer(threads=1)
    try:
        with pytest.raises(StorageError, match="disk full"):
            await committer.commit(_writer(dest, b"x" * 5000))
    finally:
        committer.close()
    assert not dest.exists() and not part_path(dest).exists()


async def test_a_cancelled_caller_leaves_a_whole_file_or_none(tmp_path: Path) -> None:
    committer = Committer(threads=1)
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
