"""`python -m bench.instructions`: instructions per image of a zero-latency mirror, by callgrind.

CPU seconds on a shared VM move by a third between runs; the instructions a run executes do not
(to ~2 %). This counts them with valgrind's callgrind for a mirror of one data set and of three
(499 and 1,497 images of the throughput section's shape) from one simulator process with a warm
render cache, and prints the marginal instructions per image: (three - one) / (their difference).
The same is counted for the minimal loop (`bench.minimal`) and the durable floor
(`bench.minimal_durable`, seeding the same data sets) over the mirror's own URL lists, and for a
sha256 of the mirrored bodies alone: valgrind's CPU has no SHA extensions, so sha256 weighs
several times more here than natively (it is shown apart, and the ratios are given without it).
User space only (no kernel, no waiting). Needs `valgrind` on the PATH; takes a few minutes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.mirror import QUIET, list_items
from bench.procs import PYTHON, REPO, SimulatorProcess, compile_sources
from bench.selection import catalogue_shape, pick_data_sets
from bench.throughput import write_jobs

# Reads every .jpg under a mirror, and with "hash" also hashes each (as allen-mirror and the
# floor hash each body once): the difference of the two is sha256's own count.
READ_ALL = """import hashlib, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.jpg")):
    body = path.read_bytes()
    if sys.argv[2] == "hash":
        hashlib.sha256(body).hexdigest()
"""

_COLLECTED = re.compile(r"Collected : (\d+)")


def count(argv: list[str], work: Path, label: str) -> int:
    """Instructions executed by ``argv`` (one process) under callgrind."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={work / label}.out", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    found = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"{label}: exit {result.returncode}: {result.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (apt-get install valgrind)")
    compile_sources()
    sections, extra = catalogue_shape(5000, data_sets=10)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        with SimulatorProcess(
            logs=work / "simulator",
            sections=sections,
            extra_connectivity_datasets=extra,
            image_scale=0.1,
        ) as sim:
            picked = pick_data_sets(sim.ask("datasets")["datasets"], 5000)
            ids = [str(d["id"]) for d in picked][:3]

            def mirror(out: Path, data_sets: list[str]) -> list[str]:
                return [
                    PYTHON, "-m", "crawler", "mirror", "--api-base", sim.base_url,
                    "--out", str(out), "--dataset", ",".join(data_sets),
                    "--concurrency", str(args.concurrency), *QUIET,
                ]  # fmt: skip

            warm = mirror(work / "out-warm", ids)
            subprocess.run(warm, cwd=REPO, capture_output=True, check=True)
            counts: dict[str, dict[str, int]] = {}
            listed: dict[str, int] = {}  # images each mirror fetched
            for label, data_sets in (("one", ids[:1]), ("three", ids)):
                out = work / f"out-{label}"
                counts.setdefault("allen-mirror", {})[label] = count(
                    mirror(out, data_sets), work, label
                )
                items = list_items(out, timeout=300)
                listed[label] = len(items)
                jobs = write_jobs(work / f"jobs-{label}.jsonl", items)
                urls = ["--urls", str(jobs), "--concurrency", str(args.concurrency)]
                seeding = ["--api-base", sim.base_url, "--data-sets", ",".join(data_sets)]
                for name, module, more in (
                    ("minimal loop", "bench.minimal", []),
                    ("durable floor", "bench.minimal_durable", seeding),
                ):
                    command = [
                        PYTHON,
                        "-m",
                        module,
                        *urls,
                        "--out",
                        str(work / f"{module}-{label}"),
                    ]
                    counts.setdefault(name, {})[label] = count(command + more, work, module + label)
                hashed, read = (
                    count([PYTHON, "-c", READ_ALL, str(out), how], work, how + label)
                    for how in ("hash", "read")
                )
                counts.setdefault("sha256 alone", {})[label] = hashed - read
    report(counts, listed["three"] - listed["one"])


def report(counts: dict[str, dict[str, int]], images: int) -> None:
    """Marginal instructions per image of each program; ratios to the minimal loop, with and
    without sha256 (which the minimal loop does not compute)."""
    per_image = {name: (c["three"] - c["one"]) / images for name, c in counts.items()}
    sha = per_image.pop("sha256 alone")
    minimal = per_image["minimal loop"]
    print(f"marginal instructions per image ({images:,} images between the two runs):")
    for name, value in per_image.items():
        hashed = 0.0 if name == "minimal loop" else sha
        print(
            f"  {name:14s} {value / 1e6:.3f} M  {value / minimal:.2f}x the minimal loop; "
            f"without sha256 {(value - hashed) / 1e6:.3f} M, {(value - hashed) / minimal:.2f}x"
        )
    print(f"  sha256 alone   {sha / 1e6:.3f} M (under valgrind: no SHA extensions)")


if __name__ == "__main__":
    main()
