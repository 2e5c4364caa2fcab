"""`python -m bench.server`: the simulator in its own process, with a control line on stdin.

It serves `crawler.simulator`'s own app (same routes, same render cache, same fault layer);
the bench only adds three things a benchmark needs and the test simulator does not offer:
timestamps of the first and last request per route (to time "start → first request" from
another process), a render cache large enough to hold every image of a run, and a control
line so one process (and one warm cache) serves several latencies in turn.

Control protocol, one command per line on stdin, one JSON line back on stdout:

    stats                 counters and first/last request times (time.time())
    reset                 zero the counters and the timestamps
    latency <ms>          change the latency of every following request
    datasets              connectivity data sets: id, failed, usable image count
    images <data_set_id>  geometry of the data set's usable section images

EOF on stdin stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from typing import Any

from aiohttp import web

from crawler.simulator import Catalogue, Counters, SimulatorConfig
from crawler.simulator.app import State, make_app
from crawler.simulator.render import RenderCache

CONNECTIVITY_PRODUCT = 5


class TimedCounters(Counters):
    """The simulator's counters plus wall-clock times of the first and last request per route."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def begin(self, route: str, url: str) -> int:
        now = time.time()
        attempt = super().begin(route, url)
        with self._lock:
            self.first.setdefault(route, now)
            self.last[route] = now
        return attempt

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.first = {}
            self.last = {}

    def brief(self) -> dict[str, Any]:
        """What the harness reads; `by_url` is left out (it holds one key per URL)."""
        with self._lock:
            return {
                "requests_total": self.requests_total,
                "by_route": dict(self.by_route),
                "by_status": {str(k): v for k, v in self.by_status.items()},
                "faults": dict(self.faults),
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "bytes_sent": self.bytes_sent,
                "first": dict(self.first),
                "last": dict(self.last),
            }


def connectivity_data_sets(catalogue: Catalogue) -> list[dict[str, Any]]:
    """Connectivity data sets in id order with the number of images a mirror would fetch."""
    products = catalogue.links["data_set_products"]
    found = []
    for record in catalogue.records("SectionDataSet"):
        if CONNECTIVITY_PRODUCT not in products.get(int(str(record["id"])), []):
            continue
        images = catalogue.lookup("SectionImage", "data_set_id", record["id"])
        usable = sum(1 for image in images if not image["failed"])
        found.append({"id": record["id"], "failed": bool(record["failed"]), "images": usable})
    return found


def image_geometry(catalogue: Catalogue, data_set_id: int) -> list[dict[str, Any]]:
    """Usable section images of one data set, with what a tile grid needs."""
    fields = ("id", "data_set_id", "section_number", "x", "y", "width", "height")
    return [
        {name: image[name] for name in fields}
        for image in catalogue.lookup("SectionImage", "data_set_id", data_set_id)
        if not image["failed"]
    ]


def answer(state: State, counters: TimedCounters, line: str) -> dict[str, Any]:
    """One control command → its JSON answer."""
    command, _, argument = line.strip().partition(" ")
    if command == "stats":
        return counters.brief()
    if command == "reset":
        counters.reset()
        return {"ok": True}
    if command == "latency":
        state.config = SimulatorConfig(latency_ms=float(argument))
        return {"ok": True, "latency_ms": state.config.latency_ms}
    if command == "datasets":
        return {"datasets": connectivity_data_sets(state.catalogue)}
    if command == "images":
        return {"images": image_geometry(state.catalogue, int(argument))}
    return {"error": f"unknown command {command!r}"}


async def serve(args: argparse.Namespace) -> None:
    catalogue = Catalogue.build(
        sections_per_dataset=args.sections,
        extra_connectivity_datasets=args.extra_connectivity_datasets,
        extra_ish_datasets=args.extra_ish_datasets,
        image_scale=args.image_scale,
    )
    counters = TimedCounters()
    state = State(
        catalogue=catalogue,
        config=SimulatorConfig(latency_ms=args.latency_ms),
        counters=counters,
        cache=RenderCache(max_bytes=args.cache_mb * 1024 * 1024),
    )
    runner = web.AppRunner(
        make_app(state), handler_cancellation=True, shutdown_timeout=0.5, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = int(runner.addresses[0][1])
    print(f"simulator listening on http://127.0.0.1:{port}", flush=True)

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:  # a daemon thread: a blocking readline never holds up shutdown
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=read_stdin, name="bench-control", daemon=True).start()
    try:
        while line := await lines.get():
            if line.strip():
                print(json.dumps(answer(state, counters, line)), flush=True)
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--sections", type=int, default=None)
    parser.add_argument("--extra-connectivity-datasets", type=int, default=6)
    parser.add_argument("--extra-ish-datasets", type=int, default=2)
    parser.add_argument("--image-scale", type=float, default=1.0)
    parser.add_argument("--cache-mb", type=int, default=1024, help="render cache size")
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
