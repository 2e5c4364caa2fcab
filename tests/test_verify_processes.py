"""verify on worker processes (a large mirror): the verdicts threads give, ``--decode`` included,
and Ctrl-C from a terminal (SIGINT to the whole process group) is one line and exit 130."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crawler import verify
from crawler.simulator import ThreadedSimulator
from tests.conftest import FAST, mirror_data_set, run_cli


def damage(out: Path) -> dict[str, str]:
    """Four files damaged four ways; the problem verify must flag for each path."""
    connection = sqlite3.connect(out / "manifest.sqlite")
    paths = [p for (p,) in connection.execute("select path from items order by id limit 4")]
    connection.close()
    truncated, longer, flipped, missing = (out / p for p in paths)
    truncated.write_bytes(truncated.read_bytes()[:-10])
    longer.write_bytes(longer.read_bytes() + b"\x00")  # one byte more than the manifest's size
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    missing.unlink()
    return dict(zip(paths, ["corrupt", "corrupt", "corrupt", "missing"], strict=True))


def flagged(out: Path) -> dict[str, str]:
    connection = sqlite3.connect(out / "manifest.sqlite")
    rows = connection.execute("select path, problem from items where problem is not null")
    found = {str(path): str(problem) for path, problem in rows}
    connection.close()
    return found


@pytest.mark.parametrize("processes_from", [0, verify.PROCESSES_FROM], ids=["processes", "threads"])
def test_verify_flags_the_same_files_on_processes_as_on_threads(
    sim: ThreadedSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    processes_from: int,
) -> None:
    out = tmp_path / "m"
    assert mirror_data_set(capsys, sim, out, *FAST).code == 0
    expected = damage(out)
    done = len(list(out.rglob("*.jpg"))) + 1  # the missing one still counts as done
    monkeypatch.setattr(verify, "PROCESSES_FROM", processes_from)
    result = run_cli(capsys, "verify", "--out", str(out), *FAST)
    assert result.code == 1, result.err
    assert f"verified {done} file(s): 1 missing, 3 corrupt" in result.out
    assert flagged(out) == expected
    decoded = run_cli(capsys, "verify", "--decode", "--out", str(out), *FAST)
    assert "1 missing, 3 corrupt" in decoded.out, decoded.err  # whole images decode


def held_verify(out: Path) -> tuple[subprocess.Popen[str], int]:
    """``verify`` on worker processes in its own process group, with one worker held in
    ``open`` by a FIFO in place of a file until the test writes to it: whatever the machine's
    speed, what the test does next lands while files are being hashed. The FIFO's writer end."""
    connection = sqlite3.connect(out / "manifest.sqlite")
    (path,) = connection.execute("select path from items order by id limit 1").fetchone()
    connection.close()
    held = out / path
    held.unlink()
    os.mkfifo(held)
    lowered = "import crawler.verify as v; v.PROCESSES_FROM = 0; from crawler.cli import run; run()"
    argv = [sys.executable, "-c", lowered, "verify", "--out", str(out), *FAST]
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while True:  # a writer can open the FIFO once a worker opened it for reading
        try:
            return child, os.open(held, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if child.poll() is not None or time.monotonic() > deadline:
                os.killpg(child.pid, signal.SIGKILL)
                raise AssertionError(f"no worker opened the file: {child.communicate()}") from None
            time.sleep(0.02)


def group_ends(group: int) -> None:
    """Every process of ``group`` (the workers, their fork server) is gone within 10 s."""
    deadline = time.monotonic() + 10
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(group, signal.SIGKILL)
            raise AssertionError("a worker process outlived the command")
        time.sleep(0.05)


def test_ctrl_c_during_hashing_on_processes_is_one_line_and_exit_130(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    assert mirror_data_set(capsys, sim, out, *FAST).code == 0
    child, writer = held_verify(out)
    try:
        os.killpg(child.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every process
        time.sleep(0.2)
        os.close(writer)  # the held worker reads an empty file and finishes its group
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == "allen-mirror: interrupted"
    group_ends(child.pid)


def test_workers_leave_when_verify_is_killed(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill -9 of the command: its workers would otherwise wait forever for groups."""
    out = tmp_path / "m"
    assert mirror_data_set(capsys, sim, out, *FAST).code == 0
    child, writer = held_verify(out)
    os.kill(child.pid, signal.SIGKILL)  # the command alone, as the OOM killer would
    child.wait(timeout=60)
    try:
        group_ends(child.pid)
    finally:
        os.close(writer)
        child.communicate(timeout=60)  # the pipes close once every process is gone


def workers_of(command: int) -> list[int]:
    """The worker processes of a verify: in its process group, children of its fork server."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent, group = int(fields[1]), int(fields[2])
        if group == command and parent != command and int(entry.name) != command:
            found.append(int(entry.name))
    return found


def test_a_worker_that_dies_ends_verify_in_one_line(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker killed under it (the OOM killer): exit 1, one line, nothing flagged."""
    out = tmp_path / "m"
    assert mirror_data_set(capsys, sim, out, *FAST).code == 0
    child, writer = held_verify(out)
    try:
        workers = workers_of(child.pid)
        assert workers, "no worker process found"
        for worker in workers:
            os.kill(worker, signal.SIGKILL)
        _, err = child.communicate(timeout=60)
    finally:
        os.close(writer)
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 1, err
    assert "Traceback" not in err, err
    assert "a hashing worker process died" in err.strip().splitlines()[-1]
    assert flagged(out) == {}
    group_ends(child.pid)


def test_the_console_script_imports_no_command_line_before_it_runs() -> None:
    """multiprocessing starts verify's workers by importing the main script again: the module
    the ``allen-mirror`` script imports must not pull in the command line (SQLAlchemy, aiohttp)."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="allen-mirror")
    assert script.value == "crawler.__main__:run"
    code = "import sys, crawler.__main__; print(sorted(m for m in sys.modules if 'crawler' in m))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["['crawler',", "'crawler.__main__']"]
