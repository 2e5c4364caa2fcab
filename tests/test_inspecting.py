"""Reading commands tell the truth (issue 15, point 11): a damaged manifest is one clear line
and exit 1, a read-only mirror can be inspected, and verify on a full disk names the place."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler import verify
from crawler.simulator import ThreadedSimulator
from crawler.validate import JpegWalker
from tests.conftest import FAST, mirror_data_set, run_cli


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("allen-mirror:")]


def test_status_on_a_damaged_manifest_is_one_line_and_exit_1(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    assert mirror_data_set(capsys, sim, out, *FAST).code == 0
    database = out / "manifest.sqlite"
    connection = sqlite3.connect(database)
    (root,), (page,) = [
        connection.execute("select rootpage from sqlite_master where name = 'items'").fetchone(),
        connection.execute("pragma page_size").fetchone(),
    ]
    connection.close()
    data = bytearray(database.read_bytes())
    start = (root - 1) * page  # the items table's page; its indexes stay whole
    data[start + 8 : start + page] = b"\x5a" * (page - 8)
    database.write_bytes(bytes(data))
    for command in (["status"], ["status", "--json"]):
        result = run_cli(capsys, *command, "--out", str(out))
        assert result.code == 1, result.out
        (line,) = error_lines(result.err)
        assert f"manifest {database} is damaged" in line
        assert result.out == ""


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 2 MB (needs root), unmounted afterwards."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): " + mounted.stderr.decode().strip())
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_reading_commands_work_on_a_read_only_mirror(
    sim: ThreadedSimulator, small_mount: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_mount / "m"
    assert mirror_data_set(capsys, sim, out, *FAST).code == 0
    expected = json.loads(run_cli(capsys, "status", "--out", str(out), "--json").out)
    remount = ["mount", "-o", "remount,ro", str(small_mount)]
    subprocess.run(remount, check=True, capture_output=True)
    status = run_cli(capsys, "status", "--out", str(out), "--json")
    assert status.code == 0, status.err
    document = json.loads(status.out)
    assert document["counts"] == expected["counts"] and document["bytes"] == expected["bytes"]
    listed = run_cli(capsys, "ls", "--out", str(out))
    assert listed.code == 0, listed.err
    assert len(listed.out.splitlines()) == expected["items"]
    history = run_cli(capsys, "history", "--out", str(out))
    assert history.code == 0 and "mirror" in history.out, history.err
    verify = run_cli(capsys, "verify", "--out", str(out), *FAST)
    assert verify.code == 0, verify.err
    done = expected["counts"]["done"]
    assert f"verified {done} file(s): 0 missing, 0 corrupt" in verify.out
    assert not (out / "manifest.sqlite-wal").exists()


def test_verify_on_a_full_disk_says_where_in_one_line(
    sim: ThreadedSimulator, small_mount: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_mount / "m"
    assert mirror_data_set(capsys, sim, out, *FAST).code == 0
    descriptor = os.open(small_mount / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(descriptor, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(descriptor)
    result = run_cli(capsys, "verify", "--out", str(out), *FAST)
    assert "Traceback" not in result.err
    (line,) = error_lines(result.err)
    assert result.code == 1
    assert str(small_mount) in line and ("disk full" in line or "No space" in line), line


@pytest.mark.parametrize("processes_from", [0, verify.PROCESSES_FROM], ids=["processes", "threads"])
def test_verify_decode_finds_an_image_that_only_looks_whole(
    sim: ThreadedSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    processes_from: int,
) -> None:
    monkeypatch.setattr(verify, "PROCESSES_FROM", processes_from)
    out = tmp_path / "m"
    assert mirror_data_set(capsys, sim, out, *FAST).code == 0
    database = out / "manifest.sqlite"
    connection = sqlite3.connect(database)
    item_id, path = connection.execute("select id, path from items limit 1").fetchone()
    body = bytearray((out / path).read_bytes())
    table = body.index(b"\xff\xc4") + 5  # the counts of the first Huffman table
    body[table : table + 16] = b"\xff" * 16  # bogus: far more codes than a table can hold
    walked = bytes(body)
    walker = JpegWalker("check")  # segment lengths are intact: the structure walk passes it
    walker.feed(walked)
    walker.finish()
    (out / path).write_bytes(walked)
    digest = hashlib.sha256(walked).hexdigest()
    with connection:
        connection.execute(
            "update items set size = ?, sha256 = ? where id = ?", (len(walked), digest, item_id)
        )
    connection.close()
    plain = run_cli(capsys, "verify", "--out", str(out), *FAST)
    assert plain.code == 0 and "0 missing, 0 corrupt" in plain.out, plain.err
    decoded = run_cli(capsys, "verify", "--decode", "--out", str(out), *FAST)
    assert decoded.code == 1
    assert "0 missing, 1 corrupt" in decoded.out
    assert path in decoded.err  # the verify.problem event names the file


@pytest.mark.parametrize("command", ["verify", "ls", "status", "history"])
def test_a_mirror_without_a_manifest_is_one_line_and_exit_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, command, "--out", str(tmp_path / "nothing-here"))
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert "no manifest" in result.err
    assert not (tmp_path / "nothing-here").exists()
