"""The progress bar: what its lines say, and what a real terminal shows during a slow run."""

from __future__ import annotations

import os
import pty
import re
import sys
import time
from pathlib import Path

from crawler.progress import STALL_SECONDS, Tally, status_lines
from crawler.simulator import SimulatorConfig, serve_in_thread
from tests.conftest import REPO, small_catalogue

COLOUR = re.compile(r"\x1b\[[0-9;]*m")
CURSOR = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")  # moves and erases: a new line of the screen


def test_the_lines_under_the_bar_count_and_name_a_stall() -> None:
    tally = Tally(items=12, failed=1, bytes=3_000_000, started=100.0, last_finished=103.0)
    assert status_lines(tally, 2, [], 106.0) == ["  3.0 MB  500.0 kB/s  2 retries  1 failed"]
    assert status_lines(tally, 1, [], 106.0)[0].endswith("1 retry  1 failed")
    assert status_lines(tally, None, [], 106.0) == ["  3.0 MB  500.0 kB/s"]  # verify, export
    # Requests in flight but the last item finished less than STALL_SECONDS ago: nothing said.
    assert len(status_lines(tally, 0, [101.0], 103.0 + STALL_SECONDS - 0.1)) == 1
    stalled = status_lines(tally, 0, [101.0, 110.5, 112.0], 129.0)
    assert stalled[1] == "  waiting on 3 slow requests (longest 28 s)"
    assert status_lines(tally, 0, [], 129.0) == status_lines(tally, 0, [], 129.0)[:1]  # idle


def run_in_terminal(args: list[str], seconds: float) -> tuple[int, str]:
    """``python -m crawler ARGS`` on a pseudo-terminal 80 columns wide: exit code and screen."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        os.chdir(REPO)
        os.environ.update(COLUMNS="80", LINES="24", TERM="xterm-256color")
        os.execv(sys.executable, [sys.executable, "-m", "crawler", *args])
    output = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), CURSOR.sub(
        "\n", COLOUR.sub("", output.decode(errors="replace"))
    )


def test_a_terminal_sees_counts_times_and_what_a_slow_run_waits_on(tmp_path: Path) -> None:
    catalogue = small_catalogue(4)
    slow = next(
        image["id"]
        for image in catalogue.records("SectionImage")
        if image["data_set_id"] == 100141599 and not image.get("failed")
    )
    config = SimulatorConfig(permanent_failures={slow: "trickle"}, trickle_bytes_per_second=50)
    with serve_in_thread(catalogue, config) as sim:
        args = ["mirror", "--dataset", "100141599", "--out", str(tmp_path / "m")]
        args += ["--api-base", sim.base_url, "--retries", "0", "--max-item-seconds", "13"]
        code, screen = run_in_terminal(args, 60)
    assert code == 1, screen  # the trickling image failed after 13 s
    assert re.search(r"mirror .* \d+/3 items  elapsed 0:00:\d\d left", screen), screen
    assert re.search(r"\d+ (bytes|kB)  [\d.]+ (bytes|kB)/s  0 retries  0 failed", screen), screen
    waited = re.findall(r"waiting on 1 slow request \(longest (\d+) s\)", screen)
    assert waited and STALL_SECONDS <= int(waited[-1]) <= 14, screen
    assert "1 failed" in screen
    drawn = [
        line for line in screen.splitlines() if re.search(r"items  elapsed|retr|waiting", line)
    ]
    assert drawn and all(len(line) <= 80 for line in drawn), drawn  # the bar fits 80 columns
