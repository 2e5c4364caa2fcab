"""A small real mirror made from the simulator, for the reader and export tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from crawler.cli import main
from crawler.simulator import SimulatorConfig, serve_in_thread
from tests.conftest import FAST, small_catalogue

CONNECTIVITY, ISH = 100141599, 69782969


def build_mirror(out: Path) -> Path:
    """A connectivity data set (section + projection) and an ISH one (section + expression)
    at tier 4, plus two images of the first as 64-pixel tiles at tier 2."""
    with serve_in_thread(small_catalogue(), SimulatorConfig()) as sim:
        runs = [
            [str(CONNECTIVITY), "--image", "section,projection"],
            [str(ISH), "--image", "section,expression"],
            [
                str(CONNECTIVITY),
                "--image",
                "section,projection",
                "--tile",
                "64",
                "--downsample",
                "2",
                "--sections",
                "1-2",
            ],
        ]
        for run in runs:
            args = ["mirror", "--out", str(out), "--api-base", sim.base_url, "--dataset"]
            assert main([*args, *run, *FAST]) == 0
    return out


def done_items(out: Path) -> list[dict[str, object]]:
    with sqlite3.connect(out / "manifest.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM items WHERE status = 'done'")]


# -- pure decisions ---------------------------------------------------------------------------
