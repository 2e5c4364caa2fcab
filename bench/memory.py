"""Section 4: peak RSS of a mirror at several sizes (it must not grow with the item count).

Zero latency and ~1 kB images, so a 100,000-item run is about requests, manifest rows and
files, not bytes. RSS is also sampled from /proc while the run goes, to compare its first and
second half.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path

from bench import mirror
from bench.options import Options
from bench.procs import BenchError, FirstRequest, SimulatorProcess
from bench.report import Row
from bench.selection import catalogue_shape, pick_data_sets, ratio

RSS_LIMIT_MB = 250.0
SAMPLE_EVERY = 0.1


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler:
    """A `run_measured` watch that records (seconds since start, RSS MB) every tenth of a second."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._last = 0.0

    def __call__(self, process: subprocess.Popen[bytes], started: float) -> bool:
        now = time.time()
        if now - self._last >= SAMPLE_EVERY:
            self._last = now
            rss = _rss_mb(process.pid)
            if rss is not None:
                self.samples.append((now - started, rss))
        return False

    def highest(self, start: float, end: float) -> float:
        return max((rss for at, rss in self.samples if start < at <= end), default=float("nan"))


def _rerun_rows(
    sim: SimulatorProcess, out: Path, data_sets: list[int], done: int, options: Options, work: Path
) -> list[Row]:
    """A second mirror over a complete mirror: it re-checks every file and downloads nothing."""
    sim.ask("reset")
    first = FirstRequest(sim)
    run = mirror.run_mirror(
        sim.base_url,
        out,
        data_sets,
        concurrency=options.concurrency,
        logs=work / "logs" / f"memory-{done}-rerun",
        timeout=options.step_timeout,
        watch=first,
    )
    images = int(sim.ask("stats")["by_route"].get("image", 0))
    if images or run.summary.get("done"):
        raise BenchError(f"the re-run over a complete mirror downloaded {images} image(s)")
    case = f"{done:,} images, re-run over the complete mirror"
    return [
        Row("memory", case, "start → first request (RMA)", first.seconds.get("rma", math.nan), "s"),
        Row("memory", case, "process wall (downloads nothing)", run.measured.wall, "s"),
        Row("memory", case, "peak RSS (ru_maxrss)", run.measured.maxrss_mb, "MB", RSS_LIMIT_MB),
    ]


def run(options: Options, work: Path) -> tuple[list[Row], list[str]]:
    sizes = sorted(set(options.memory_items))
    sections, extra = catalogue_shape(max(sizes))
    rows: list[Row] = []
    notes: list[str] = []
    peaks: dict[int, float] = {}
    with SimulatorProcess(
        logs=work / "logs" / "simulator-memory",
        sections=sections,
        extra_connectivity_datasets=extra,
        image_scale=options.memory_image_scale,
    ) as sim:
        available = sim.ask("datasets")["datasets"]
        for size in sizes:
            data_sets = [int(d["id"]) for d in pick_data_sets(available, size)]
            sampler = RssSampler()
            out = work / "runs" / f"memory-{size}"
            run = mirror.run_mirror(
                sim.base_url,
                out,
                data_sets,
                concurrency=options.concurrency,
                logs=work / "logs" / f"memory-{size}",
                timeout=options.step_timeout,
                watch=sampler,
            )
            done = int(run.summary["done"])
            peaks[done] = run.measured.maxrss_mb
            case = f"{done:,} images, zero latency, C={options.concurrency}"
            half = run.measured.wall / 2
            rows += [
                Row(
                    "memory",
                    case,
                    "peak RSS (ru_maxrss)",
                    run.measured.maxrss_mb,
                    "MB",
                    RSS_LIMIT_MB,
                ),
                Row(
                    "memory",
                    case,
                    "RSS, highest sample in the first half",
                    sampler.highest(0.0, half),
                    "MB",
                ),
                Row(
                    "memory",
                    case,
                    "RSS, highest sample in the second half",
                    sampler.highest(half, math.inf),
                    "MB",
                ),
                Row("memory", case, "run.summary seconds", run.seconds, "s"),
                Row("memory", case, "images/s", done / run.seconds, "img/s"),
            ]
            if size == sizes[-1]:
                rows += _rerun_rows(sim, out, data_sets, done, options, work)
            shutil.rmtree(out, ignore_errors=True)
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        rows.append(
            Row(
                "memory",
                f"{large:,} vs {small:,} images",
                "peak RSS growth (larger / smaller)",
                ratio(peaks[large], peaks[small]),
                "x",
            )
        )
    notes.append(
        f"Memory: images of ~1 kB (image scale {options.memory_image_scale:g}), rendered by the "
        "simulator on first request (no warm-up: only RSS is judged here). The re-run starts "
        "with the resume check (a stat of every done file) before its first request."
    )
    return rows, notes
