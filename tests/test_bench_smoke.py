"""The benchmark harness cannot rot: `python -m bench --tiny` runs and prints every number.

Benchmarks are not part of the suite; this only proves the harness still works end to end
(simulator process, real CLI, minimal loop, table) and that its pure decisions hold.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import Row, table
from bench.selection import (
    catalogue_shape,
    ideal_seconds,
    pick_data_sets,
    ratio,
    tile_count,
    tile_grid,
)

REPO = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"^-?[\d,]*\.?\d+")

# measure prefixes every --tiny run must report, per section
EXPECTED = {
    "throughput": [
        "ideal bound",
        "minimal loop, first request to last file",
        "allen-mirror, run.summary seconds",
        "allen-mirror / minimal loop",
        "allen-mirror / ideal bound",
    ],
    "overhead": [
        "minimal loop CPU per 1,000 images",
        "allen-mirror CPU per 1,000 images",
        "allen-mirror / minimal loop, whole process",
        "allen-mirror / minimal loop, marginal",
        "durable floor CPU per 1,000 more images",
        "allen-mirror / durable floor, marginal",
    ],
    "scale": [
        "plan, process wall",
        "plan, peak RSS",
        "status, process wall",
        "resumed mirror: start → first tile request",
    ],
    "memory": ["peak RSS (ru_maxrss)", "peak RSS growth", "start → first request"],
    "products": [
        "allen-mirror plan, RMA requests",
        "allen-mirror plan / minimal client",
        "allen-mirror: share of the C/L bound reached",
        "sync image requests",
        "sync, process wall",
        "verify / sha256sum",
    ],
}


def parse_table(text: str) -> list[dict[str, str]]:
    """The rows of the final markdown table (after '## Results')."""
    _, _, results = text.partition("## Results")
    rows = []
    for line in results.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in EXPECTED:
            rows.append(
                dict(
                    zip(
                        ("section", "case", "measure", "value", "target", "verdict"),
                        cells,
                        strict=True,
                    )
                )
            )
    return rows


@pytest.mark.slow
@pytest.mark.timeout(250)
def test_tiny_run_prints_every_section(tmp_path: Path) -> None:
    results = tmp_path / "rows.json"
    doc = tmp_path / "BENCHMARKS.md"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--json", str(results), "--write", str(doc)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    rows = parse_table(completed.stdout)
    for section, measures in EXPECTED.items():
        found = [row for row in rows if row["section"] == section]
        for measure in measures:
            matching = [row for row in found if row["measure"].startswith(measure)]
            assert matching, f"no '{measure}' row in section {section}"
            for row in matching:
                if "marginal" in row["measure"] and row["value"] == "n/a":
                    continue  # a difference of two tiny runs can be noise-negative
                assert NUMBER.match(row["value"]), f"not a number: {row}"
    throughput_cases = {row["case"] for row in rows if row["section"] == "throughput"}
    assert any("50 ms" in case for case in throughput_cases)
    assert any("200 ms" in case for case in throughput_cases)

    recorded = json.loads(results.read_text())
    assert len(recorded) == len(rows)
    for row in recorded:
        if "marginal" in row["measure"]:
            continue  # a difference of two tiny runs: its sign is noise at this size
        if row["measure"] == "sync image requests":
            assert row["value"] == 0, row  # a no-op sync downloads nothing
            continue
        assert math.isfinite(row["value"]) and row["value"] > 0, row
        if row["unit"] == "x":
            assert 0.05 < row["value"] < 1000, row

    written = doc.read_text()
    assert "bench:results:start" in written and "--tiny" in written
    assert "| throughput |" in written and "python" in written.lower()


def test_ideal_bound_is_rounds_times_latency() -> None:
    assert ideal_seconds(5000, 32, 0.05) == pytest.approx(157 * 0.05)
    assert ideal_seconds(32, 32, 0.2) == pytest.approx(0.2)
    assert ideal_seconds(33, 32, 0.2) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("width", "height", "tile", "downsample"),
    [(1000, 700, 256, 0), (27500, 18500, 256, 0), (1000, 700, 256, 2), (256, 256, 256, 0)],
)
def test_tile_grid_covers_the_tier_without_overlap(
    width: int, height: int, tile: int, downsample: int
) -> None:
    tiles = list(tile_grid(width, height, tile, downsample))
    assert len(tiles) == tile_count(width, height, tile, downsample)
    tier_w, tier_h = math.ceil(width / 2**downsample), math.ceil(height / 2**downsample)
    assert sum(w * h for *_, w, h in tiles) == tier_w * tier_h
    assert all(0 < w <= tile and 0 < h <= tile for *_, w, h in tiles)


def test_data_sets_are_picked_until_enough_usable_images() -> None:
    data_sets = [
        {"id": 1, "failed": False, "images": 499},
        {"id": 2, "failed": True, "images": 500},
        {"id": 3, "failed": False, "images": 500},
        {"id": 4, "failed": False, "images": 500},
    ]
    assert [d["id"] for d in pick_data_sets(data_sets, 900)] == [1, 3]
    assert [d["id"] for d in pick_data_sets(data_sets, 500)] == [1]  # within 1 %
    with pytest.raises(ValueError):
        pick_data_sets(data_sets, 2000)


def test_catalogue_shape_holds_the_requested_images() -> None:
    for images in (40, 5000, 100_000):
        sections, extra = catalogue_shape(images)
        usable = (extra + 2) * sections - 2  # two data sets carry one failed section each
        assert usable >= images


def test_table_marks_missed_and_unmeasured_targets() -> None:
    rows = [
        Row("throughput", "c", "fast enough", 1.05, "x", 1.10),
        Row("throughput", "c", "too slow", 1.30, "x", 1.25),
        Row("scale", "c", "never measured", math.nan, "s", 5.0),
        Row("scale", "c", "no target", 3.0, "s"),
    ]
    text = table(rows)
    assert "| 1.05× | ≤ 1.10× | met |" in text
    assert "| 1.30× | ≤ 1.25× | **missed** |" in text
    assert "| n/a | ≤ 5.00 s | **missed** |" in text
    assert math.isnan(ratio(1.0, 0.0))
