"""The harness's flags: sizes of each benchmark, with `--tiny` for the smoke test."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

SECTIONS = ("throughput", "overhead", "scale", "memory", "products")  # by default
EXTRA_SECTIONS = ("export", "s3")  # only when named: --only export,s3


@dataclass(frozen=True)
class Options:
    """What one harness run measures, and how big."""

    images: int = 5000
    data_sets: int = 10  # the throughput images are spread over about this many data sets
    latencies: tuple[float, ...] = (50.0, 200.0)
    concurrency: int = 32
    repeat: int = 3  # CPU noise on shared machines only adds: the least of three rounds is kept
    image_scale: float = 0.1  # ~170x120 px downsample-4 JPEGs of ~7.6 kB: the cache holds all
    # The realistic case: full-size downsample-4 connectivity images (a few hundred kB), 50 ms.
    realistic_images: int = 1000
    realistic_image_scale: float = 1.0
    scale_items: int = 1_000_000
    memory_items: tuple[int, ...] = (10_000, 100_000)
    memory_image_scale: float = 0.02  # ~1 kB images: a 100,000-item mirror is about requests
    export_images: int = 20_000  # ~1 kB JPEGs exported to WebDataset, against tar cf
    s3_images: int = 2000  # mirrored to disk and into a (moto) bucket, --only s3
    # Whole products (issue 16): a connectivity-like product to plan, an ISH-like one to mirror,
    # and a mirror of about noop_items done items to sync (nothing changed) and verify.
    product_data_sets: int = 1000
    product_sections: int = 140
    ish_data_sets: int = 2000
    ish_sections: int = 20
    noop_items: int = 100_000
    product_latency: float = 50.0
    only: tuple[str, ...] = SECTIONS
    write: Path | None = None
    json: Path | None = None
    workdir: Path | None = None
    keep: bool = False
    tiny: bool = False
    step_timeout: float = 1800.0  # no single child process may run longer


TINY = {
    "images": 40,
    "realistic_images": 20,
    "repeat": 1,
    "data_sets": 2,
    "scale_items": 3000,
    "memory_items": (60, 240),
    "export_images": 200,
    "s3_images": 40,
    "product_data_sets": 12,
    "product_sections": 14,
    "ish_data_sets": 30,
    "ish_sections": 4,
    "noop_items": 600,
    "step_timeout": 120.0,
}


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def _counts(text: str) -> tuple[int, ...]:
    return tuple(int(float(part)) for part in text.split(",") if part.strip())


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = set(chosen) - set(SECTIONS) - set(EXTRA_SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s): {', '.join(sorted(unknown))}")
    return chosen


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark allen-mirror against the C/L bound and a minimal aiohttp loop.",
    )
    parser.add_argument("--images", type=int, help="images of the throughput runs [5000]")
    parser.add_argument("--latencies", type=_numbers, help="simulated latencies, ms [50,200]")
    parser.add_argument("--concurrency", type=int, help="requests in flight [32]")
    parser.add_argument(
        "--repeat",
        type=int,
        help="runs per contestant: throughput keeps the fastest, overhead the least CPU [3]",
    )
    parser.add_argument("--image-scale", type=float, help="catalogue image scale [0.1]")
    parser.add_argument("--scale-items", type=int, help="tile items of the scale test [1000000]")
    parser.add_argument(
        "--memory-items", type=_counts, help="mirror sizes of the memory test [10000,100000]"
    )
    parser.add_argument("--export-images", type=int, help="images of the export bench [20000]")
    parser.add_argument("--s3-images", type=int, help="images of the s3 bench [2000]")
    parser.add_argument(
        "--only", type=_sections, help=f"subset of {','.join(SECTIONS + EXTRA_SECTIONS)}"
    )
    parser.add_argument("--tiny", action="store_true", help="a few dozen items: the smoke test")
    parser.add_argument("--write", type=Path, help="update this markdown file (BENCHMARKS.md)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--workdir", type=Path, help="scratch directory [a new temp dir]")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    values: dict[str, object] = dict(TINY) if args.tiny else {}
    for name in (
        "images",
        "latencies",
        "concurrency",
        "repeat",
        "image_scale",
        "scale_items",
        "memory_items",
        "export_images",
        "s3_images",
        "only",
        "write",
        "json",
        "workdir",
    ):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    options = Options(keep=args.keep, tiny=args.tiny, **values)  # type: ignore[arg-type]
    if options.images < 1 or options.concurrency < 1 or options.repeat < 1:
        parser.error("--images, --concurrency and --repeat must be at least 1")
    if not options.latencies or any(latency < 0 for latency in options.latencies):
        parser.error("--latencies must be non-negative numbers")
    if options.export_images < 1:
        parser.error("--export-images must be at least 1")
    if not options.memory_items or min(options.memory_items) < 1 or options.scale_items < 1:
        parser.error("--memory-items and --scale-items must be positive")
    return options
