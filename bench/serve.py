"""`python -m bench.serve`: requests per second of `allen-mirror serve` under concurrent clients.

A mirror of data set 100141599 (sections and projections at tier 4, section 1 as 64-pixel
tiles at tier 2) is made from the in-process simulator; `serve` runs as its own process; N
aiohttp clients then ask, all at once, for whole images, tiles and one RMA page (the data set's
SectionImages with their Alignment2d, as seeding asks). Prints requests per second and the
median and 99th-percentile latency per kind.

    .venv/bin/python -m bench.serve [--clients 64] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from crawler.cli import main as cli
from crawler.simulator import Catalogue, serve_in_thread

DATA_SET = 100141599


def build(out: Path) -> list[str]:
    """Mirror the data set from the simulator; return the request paths to replay."""
    catalogue = Catalogue.build(sections_per_dataset=20, image_scale=0.1)
    quiet = ["--no-progress", "--log-format", "json"]
    with serve_in_thread(catalogue) as sim:
        base = ["mirror", "--out", str(out), "--api-base", sim.base_url, "--dataset", str(DATA_SET)]
        assert cli([*base, "--image", "section,projection", *quiet]) == 0
        assert cli([*base, "--tile", "64", "--downsample", "2", "--sections", "1", *quiet]) == 0
    images = catalogue.lookup("SectionImage", "data_set_id", DATA_SET)
    index = json.loads(next(out.glob(f"{DATA_SET}/section/ds2/tiles/*/index.json")).read_text())
    tiled = int(next(out.glob(f"{DATA_SET}/section/ds2/tiles/*")).name.split("_")[1])
    paths = [
        f"/api/v2/section_image_download/{i['id']}?downsample=4" for i in images if not i["failed"]
    ]
    tiles = [
        f"/api/v2/section_image_download/{tiled}?downsample=2&left={t['left']}&top={t['top']}"
        f"&width={t['width']}&height={t['height']}&range=0,923,0,987,0,4095"
        for t in index["tiles"]
    ]
    rma = (
        "/api/v2/data/query.json?q=model::SectionImage,rma::criteria,"
        f"[data_set_id$eq{DATA_SET}],rma::include,alignment2d,rma::options[num_rows$eq2000]"
    )
    return [*paths, *tiles, rma]


async def hammer(base: str, paths: list[str], clients: int, total: int) -> dict[str, list[float]]:
    """`total` requests spread over `clients` concurrent connections; latencies by kind."""
    latencies: dict[str, list[float]] = {"image": [], "tile": [], "rma": []}
    queue = [paths[i % len(paths)] for i in range(total)]

    async def client(session: aiohttp.ClientSession) -> None:
        while queue:
            path = queue.pop()
            started = time.perf_counter()
            async with session.get(base + path) as response:
                await response.read()
                assert response.status == 200, (path, response.status)
            kind = "rma" if "/data/" in path else "tile" if "left=" in path else "image"
            latencies[kind].append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=3000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="allen-bench-serve-") as work:
        out = Path(work) / "mirror"
        paths = build(out)
        command = [sys.executable, "-m", "crawler", "serve", "--out", str(out), "--port", "0",
                   "--log-format", "json"]  # fmt: skip
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)  # fmt: skip
        try:
            assert server.stdout is not None
            base = server.stdout.readline().rsplit(" on ", 1)[1].strip()
            asyncio.run(hammer(base, paths, options.clients, 200))  # warm up
            started = time.perf_counter()
            latencies = asyncio.run(hammer(base, paths, options.clients, options.requests))
            seconds = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(30)
    done = sum(len(v) for v in latencies.values())
    print(f"serve: {done} requests from {options.clients} clients in {seconds:.2f} s: "
          f"{done / seconds:.0f} requests/s")  # fmt: skip
    for kind, values in latencies.items():
        if values:
            values.sort()
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            median = statistics.median(values) * 1000
            print(
                f"  {kind:5s} n={len(values):5d} median {median:6.1f} ms  p99 {p99 * 1000:6.1f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
