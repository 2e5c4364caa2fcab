"""`python -m crawler.simulator`: serve the simulator until SIGINT/SIGTERM for subprocess tests."""

from __future__ import annotations

import argparse

from crawler.simulator.config import FAULT_KINDS
from crawler.simulator.server import run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line mirrors `run()`'s parameters one to one."""
    parser = argparse.ArgumentParser(prog="python -m crawler.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument(
        "--fault-kinds",
        default=None,
        help=f"comma-separated subset of: {','.join(sorted(FAULT_KINDS))}",
    )
    parser.add_argument("--stall-seconds", type=float, default=60.0)
    parser.add_argument("--bytes-per-second", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sections", type=int, default=None, help="sections per data set")
    parser.add_argument("--extra-connectivity-datasets", type=int, default=6)
    parser.add_argument("--image-scale", type=float, default=1.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    kinds = None if args.fault_kinds is None else set(filter(None, args.fault_kinds.split(",")))
    run(
        args.port,
        args.latency_ms,
        args.fault_rate,
        host=args.host,
        seed=args.seed,
        sections=args.sections,
        image_scale=args.image_scale,
        extra_connectivity_datasets=args.extra_connectivity_datasets,
        fault_kinds=kinds,
        stall_seconds=args.stall_seconds,
        bytes_per_second=args.bytes_per_second,
    )


if __name__ == "__main__":
    main()
