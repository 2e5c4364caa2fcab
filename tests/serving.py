"""A mirror made from the simulator, and `allen-mirror serve` over it as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from crawler.cli import main
from crawler.simulator import ThreadedSimulator
from crawler.simulator.ccf_volumes import ARCHIVE_PREFIX
from tests.conftest import FAST, REPO

DATA_SET = 100141599
ATLAS = 1
WINDOW = [0, 923, 0, 987, 0, 4095]  # data set 100141599's Equalization (ALLEN_API.md §2)
STARTUP = 30.0


def build_mirror(sim: ThreadedSimulator, out: Path) -> Path:
    """Data set 100141599 at tier 4 (sections and projections, grid, unionizes), the ontology
    and the 25 µm annotation, atlas 1's first two images with drawings, and section 1 as
    64-pixel tiles at tier 2."""
    base = ["mirror", "--out", str(out), "--api-base", sim.base_url, *FAST]
    runs = [
        ["--dataset", str(DATA_SET), "--image", "section,projection",
         "--with", "grid,unionizes,ontology,annotation",
         "--archive-base", sim.base_url + ARCHIVE_PREFIX],
        ["--atlas", str(ATLAS), "--annotation", "--sections", "1-2"],
        ["--dataset", str(DATA_SET), "--tile", "64", "--downsample", "2", "--sections", "1"],
    ]  # fmt: skip
    for run in runs:
        assert main([*base, *run]) == 0
    return out


@dataclass
class Served:
    """A running `allen-mirror serve`: its base URL and its access log (JSON lines)."""

    base_url: str
    process: subprocess.Popen[str]
    log_path: Path

    def events(self, name: str = "serve.request") -> list[dict[str, object]]:
        lines = self.log_path.read_text().splitlines()
        events = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in events if e.get("event") == name]


@contextmanager
def serving(out: Path, *extra: str, log_path: Path) -> Iterator[Served]:
    """`allen-mirror serve --out OUT --port 0` in a subprocess, stopped with SIGTERM."""
    command = [sys.executable, "-m", "crawler", "serve", "--out", str(out), "--port", "0",
               "--log-format", "json", *extra]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the server announces (or dies)
        if " on http://" not in line:
            process.kill()
            raise AssertionError(f"serve did not start: {line!r} {log_path.read_text()}")
        yield Served(line.rsplit(" on ", 1)[1].strip(), process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STARTUP)
        finally:
            if process.stdout is not None:
                process.stdout.close()
