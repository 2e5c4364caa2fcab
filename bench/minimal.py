"""`python -m bench.minimal`: the reference client, the least a bulk downloader can do.

One aiohttp session, a semaphore of C, one task per URL, each body written to its file: no
manifest, no hashing, no validation beyond HTTP 200, no retries, no fsync, no logging. Its wall
time is what the network and the server allow on this machine; allen-mirror is measured
against it.

Input: a JSON-lines file of {"url": ..., "path": ...} (paths relative to --out).
Output: one JSON line, {"seconds", "files", "bytes", "errors"}; seconds run from the first
request to the last file written (interpreter start-up excluded, like the mirror's summary).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp


async def get_body(
    session: aiohttp.ClientSession, semaphore: asyncio.Semaphore, url: str
) -> bytes | None:
    """The body of a 200 answer; None for any other status or a client error."""
    async with semaphore:
        try:
            async with session.get(url) as response:
                body = await response.read()
                return body if response.status == 200 else None
        except aiohttp.ClientError:
            return None


async def fetch_all(jobs: list[tuple[str, Path]], concurrency: int) -> tuple[float, int, int, int]:
    """Download every (url, dest); returns (seconds, files, bytes, errors)."""
    semaphore = asyncio.Semaphore(concurrency)
    files = size = errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(url: str, dest: Path) -> None:
            nonlocal files, size, errors
            body = await get_body(session, semaphore, url)
            if body is None:
                errors += 1
                return
            # Deliberately naive: small bodies written on the event loop, no thread hop.
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(body)  # noqa: ASYNC240
            files += 1
            size += len(body)

        started = time.perf_counter()
        await asyncio.gather(*(one(url, dest) for url, dest in jobs))
        seconds = time.perf_counter() - started
    return seconds, files, size, errors


def read_jobs(urls: Path, out: Path) -> list[tuple[str, Path]]:
    jobs = []
    with urls.open() as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                jobs.append((row["url"], out / row["path"]))
    return jobs


Fetch = Callable[
    [list[tuple[str, Path]], int, Path], Coroutine[Any, Any, tuple[float, int, int, int]]
]


def reference_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A reference client's options: --urls, --out, --concurrency (a client may add more)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--urls", type=Path, required=True, help="JSON lines of url and path")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    return parser


def print_result(result: tuple[float, int, int, int]) -> None:
    """A reference client's one JSON line out, from (seconds, files, bytes, errors)."""
    seconds, files, size, errors = result
    print(json.dumps({"seconds": seconds, "files": files, "bytes": size, "errors": errors}))


def command_line(prog: str, description: str | None, fetch: Fetch, argv: list[str] | None) -> None:
    """A reference client's command line: --urls, --out, --concurrency in; one JSON line out."""
    args = reference_parser(prog, description).parse_args(argv)
    jobs = read_jobs(args.urls, args.out)
    print_result(asyncio.run(fetch(jobs, args.concurrency, args.out)))


def main(argv: list[str] | None = None) -> None:
    command_line("python -m bench.minimal", __doc__, lambda jobs, c, _out: fetch_all(jobs, c), argv)


if __name__ == "__main__":
    main()
