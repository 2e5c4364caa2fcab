"""`python -m bench`: run the selected benchmarks, print the table, optionally record it."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench import export, memory, objectstore, products, scale, throughput
from bench.options import Options, parse
from bench.procs import BenchError, compile_sources
from bench.report import Row, load_average, machine, print_flush, table, write_doc


def run(options: Options, work: Path) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    steps = [
        ({"throughput", "overhead"}, throughput.run),
        ({"scale"}, scale.run),
        ({"memory"}, memory.run),
        ({"export"}, export.run),
        ({"s3"}, objectstore.run),
        ({"products"}, products.run),
    ]
    for sections, step in steps:
        if sections & set(options.only):
            # Flush what earlier sections wrote, so their writeback is not billed to this one
            # (the 1,000,000-item plan ran 45 s alone and 65-75 s right after the throughput
            # runs had left ~600 MB of files behind).
            os.sync()
            started = time.perf_counter()
            print_flush(f"bench: {', '.join(sorted(sections & set(options.only)))} ...")
            new_rows, new_notes = step(options, work)
            rows += new_rows
            notes += new_notes
            print_flush(table(new_rows))
            print_flush(f"bench: took {time.perf_counter() - started:.0f}s\n")
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    options = parse(args)
    work = options.workdir or Path(tempfile.mkdtemp(prefix="allen-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load = load_average()
    compile_sources()
    try:
        rows, notes = run(options, work)
    except BenchError as exc:
        sys.stderr.write(f"bench: error: {exc}\n(scratch files kept in {work})\n")
        return 1
    else:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_flush("## Results\n")
    print_flush(table(rows))
    print_flush("")
    for note in notes:
        print_flush(f"- {note}")
    print_flush("")
    for key, value in machine(load).items():
        print_flush(f"{key}: {value}")
    if options.write is not None:
        write_doc(options.write, rows, args, notes, load)
    if options.json is not None:
        options.json.write_text(json.dumps([asdict(row) for row in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
