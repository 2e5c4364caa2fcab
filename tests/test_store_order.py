"""The order that makes a mirror impossible to corrupt: write, fsync, rename, then record."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from crawler.localstore import OWN_SUFFIX, LocalStore, filesystem_now, sweep_parts
from crawler.manifest.models import Status
from crawler.manifest.repository import Manifest, Outcome
from crawler.store import StoredFile
from tests.conftest import FAST, run_cli


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + OWN_SUFFIX)


async def test_a_file_is_fsynced_before_it_is_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1]
    )
    dest = tmp_path / "a" / "x.jpg"
    store = LocalStore(tmp_path)
    async with store.part("a/x.jpg") as part:
        await part.write(b"\xff\xd8" + b"x" * 100)
        await part.write(b"\xff\xd9")
    assert not dest.exists()
    [stored] = await store.commit([part])
    assert calls == ["fsync", "replace"]
    assert dest.read_bytes() == b"\xff\xd8" + b"x" * 100 + b"\xff\xd9"
    assert isinstance(stored, StoredFile)
    assert stored.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert not part_path(dest).exists()


async def test_discard_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    dest = tmp_path / "y.jpg"
    async with store.part("y.jpg") as part:
        await part.write(b"x" * (5 * 1024 * 1024))  # past the spill size: on disk already
    assert part_path(dest).exists()
    await store.discard([part])
    assert not part_path(dest).exists() and not dest.exists()


def test_done_is_recorded_only_for_complete_files(
    sim, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "m"
    checked: list[str] = []
    original = Manifest.record

    async def checking_record(self: Manifest, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.status is Status.DONE:
                # at the moment the manifest is told, the file is complete under its final name
                matches = list(out.rglob(f"*_{outcome.url.split('/')[-1].split('?')[0]}.jpg"))
                assert len(matches) == 1
                body = matches[0].read_bytes()
                assert len(body) == outcome.size
                assert hashlib.sha256(body).hexdigest() == outcome.sha256
                checked.append(outcome.url)
        await original(self, outcomes)

    monkeypatch.setattr(Manifest, "record", checking_record)
    result = run_cli(
        capsys,
        "mirror",
        "--dataset",
        "100141599",
        "--out",
        str(out),
        "--api-base",
        sim.base_url,
        *FAST,
    )
    assert result.code == 0, result.err
    assert len(checked) == len(list(out.rglob("*.jpg"))) > 0


def test_the_sweep_removes_parts_of_killed_runs_never_this_runs(tmp_path: Path) -> None:
    """The sweep runs beside the downloads: a part this run is writing, under the name a killed
    run's part also had, must survive it even when its clock says it is old."""
    old = time.time() - 3600
    dest = tmp_path / "d" / "0001_1.jpg"
    dest.parent.mkdir()
    killed = dest.with_name(dest.name + ".4d2a1b2c.part")  # another process's token
    legacy = dest.with_name("0002_2.jpg.part")  # named before parts carried a token
    ours = part_path(dest)
    for path in (killed, legacy, ours):
        path.write_bytes(b"partial")
        os.utime(path, (old, old))
    assert sweep_parts(tmp_path, older_than=time.time()) == 2
    assert ours.exists() and not killed.exists() and not legacy.exists()


def test_the_filesystem_clock_is_read_off_a_file_it_stamps(tmp_path: Path) -> None:
    """A network filesystem stamps files with its server's clock: sweeps compare part files'
    mtimes with a marker's, not with this host's clock, and leave no marker behind."""
    before = time.time()
    stamped = filesystem_now(tmp_path / "out")
    assert abs(stamped - before) < 5  # the same clock here, on a local disk
    assert list((tmp_path / "out").iterdir()) == []
    old = tmp_path / "out" / "a.jpg.dead0001.part"
    old.write_bytes(b"x")
    os.utime(old, (stamped - 10, stamped - 10))
    assert sweep_parts(tmp_path / "out", filesystem_now(tmp_path / "out")) == 1
