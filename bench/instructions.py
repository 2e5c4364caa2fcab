"""`python -m bench.instructions`: instructions per image of a zero-latency mirror, by callgrind.

CPU seconds on a shared VM move by a third between runs; the instructions a run executes do not
(to ~2 %). This counts them with valgrind's callgrind for a mirror of one data set and of three
(499 and 1,497 images of the throughput section's shape) from one simulator process with a warm
render cache, and prints the marginal instructions per image: (three - one) / (their difference).
It counts user space only (no kernel, no waiting), and valgrind's CPU has no SHA extensions, so
sha256 weighs more here than natively. Needs `valgrind` on the PATH; takes about a minute.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.mirror import QUIET
from bench.procs import PYTHON, REPO, SimulatorProcess, compile_sources
from bench.selection import catalogue_shape, pick_data_sets

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
            sizes = {
                "one": int(picked[0]["images"]),
                "three": sum(int(d["images"]) for d in picked[:3]),
            }

            def mirror(label: str, data_sets: list[str]) -> list[str]:
                out = work / f"out-{label}"
                return [
                    PYTHON, "-m", "crawler", "mirror", "--api-base", sim.base_url,
                    "--out", str(out), "--dataset", ",".join(data_sets),
                    "--concurrency", str(args.concurrency), *QUIET,
                ]  # fmt: skip

            subprocess.run(mirror("warm", ids), cwd=REPO, capture_output=True, check=True)
            one = count(mirror("one", ids[:1]), work, "one")
            three = count(mirror("three", ids), work, "three")
    marginal = (three - one) / (sizes["three"] - sizes["one"])
    print(
        f"one data set ({sizes['one']} images): {one / 1e6:,.0f} M instructions; "
        f"three ({sizes['three']}): {three / 1e6:,.0f} M; "
        f"marginal {marginal / 1e6:.3f} M instructions per image"
    )


if __name__ == "__main__":
    main()
