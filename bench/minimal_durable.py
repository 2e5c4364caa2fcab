"""`python -m bench.minimal_durable`: the minimal loop plus what every mirrored file is promised.

`bench.minimal` and, per file, only what the issues require of any mirror of ours: an idle-read
timeout (a stalled body cannot hang the run), the JPEG structure walk (allen-mirror's own
`JpegWalker`, on the event loop as there), a sha256 of the body, a part file made durable
before it is renamed into place (one syncfs per batch, as allen-mirror does), and a manifest row
recorded in a transaction per batch. With ``--api-base`` and ``--data-sets`` it first asks the
RMA for those data sets' images (with their alignments, the query allen-mirror sends) and
decodes every page, the least seeding can do (as
`bench.minimal_seed`); its URL list still comes from --urls. No planning, retries, limits,
logging or progress. Its CPU per image is a floor for any client that keeps those promises;
section 2 measures allen-mirror against it as well as against the minimal loop.

Input: a JSON-lines file of {"url": ..., "path": ...} (paths relative to --out).
Output: one JSON line, {"seconds", "files", "bytes", "errors"}, as `bench.minimal`.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import aiohttp

from bench.minimal import get_body, print_result, read_jobs, reference_parser
from bench.minimal_seed import Client, image_rows
from crawler.validate import JpegWalker

BATCH = 64  # files per flush and per manifest transaction, as allen-mirror's store stage
IDLE_READ_SECONDS = 30.0  # allen-mirror's default --timeout
PER_QUERY = 14  # data sets per image query when seeding, as bench.minimal_seed is run
LIBC = ctypes.CDLL(None, use_errno=True)


class Durable:
    """Parts written on the event loop; each batch flushed, renamed and recorded in a thread."""

    def __init__(self, out: Path, jobs: list[tuple[str, Path]]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.root = os.open(out, os.O_RDONLY)
        self.db = sqlite3.connect(out / "manifest.sqlite", check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, path TEXT UNIQUE, status TEXT,"
            " size INTEGER, sha256 TEXT)"
        )
        rows = [(n, str(dest), "pending") for n, (_, dest) in enumerate(jobs)]
        self.db.executemany("INSERT INTO items (id, path, status) VALUES (?, ?, ?)", rows)
        self.db.commit()
        self.lock = threading.Lock()
        self.waiting: list[tuple[int, str, str, int, str]] = []

    def write_part(self, number: int, dest: Path, body: bytes) -> None:
        part = f"{dest}.part"
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
        digest = hashlib.sha256(body).hexdigest()
        self.waiting.append((number, part, str(dest), len(body), digest))

    def commit(self, batch: list[tuple[int, str, str, int, str]]) -> None:
        """Blocking: make the batch durable, put each file in place, record the batch."""
        if LIBC.syncfs(self.root) != 0:
            raise OSError(ctypes.get_errno(), "syncfs")
        for _, part, dest, _, _ in batch:
            os.replace(part, dest)
        rows = [(size, digest, number) for number, _, _, size, digest in batch]
        with self.lock:
            self.db.executemany(
                "UPDATE items SET status = 'done', size = ?, sha256 = ? WHERE id = ?", rows
            )
            self.db.commit()

    async def flush(self, everything: bool = False) -> None:
        while len(self.waiting) >= (1 if everything else BATCH):
            batch, self.waiting = self.waiting[:BATCH], self.waiting[BATCH:]
            await asyncio.to_thread(self.commit, batch)


async def fetch_all(
    jobs: list[tuple[str, Path]],
    concurrency: int,
    out: Path,
    api_base: str | None = None,
    data_sets: list[int] | None = None,
) -> tuple[float, int, int, int]:
    """Seed (when asked), then download, walk, hash, write, flush, rename and record every
    (url, dest)."""
    durable = Durable(out, jobs)
    semaphore = asyncio.Semaphore(concurrency)
    files = size = errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300, sock_read=IDLE_READ_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(number: int, url: str, dest: Path) -> None:
            nonlocal files, size, errors
            body = await get_body(session, semaphore, url)
            if body is None:
                errors += 1
                return
            walk = JpegWalker(url)
            walk.feed(body)
            walk.finish()
            durable.write_part(number, dest, body)  # on the event loop, as bench.minimal does
            await durable.flush()
            files += 1
            size += len(body)

        started = time.perf_counter()
        if api_base and data_sets:
            await image_rows(Client(session, api_base, concurrency), data_sets, PER_QUERY, 2000)
        await asyncio.gather(*(one(n, url, dest) for n, (url, dest) in enumerate(jobs)))
        await durable.flush(everything=True)
        seconds = time.perf_counter() - started
    return seconds, files, size, errors


def main(argv: list[str] | None = None) -> None:
    parser = reference_parser("python -m bench.minimal_durable", __doc__)
    parser.add_argument("--api-base", help="seed from this RMA first (with --data-sets)")
    parser.add_argument("--data-sets", default="", help="comma-separated data set ids to seed")
    args = parser.parse_args(argv)
    jobs = read_jobs(args.urls, args.out)
    data_sets = [int(i) for i in args.data_sets.split(",") if i]
    print_result(asyncio.run(fetch_all(jobs, args.concurrency, args.out, args.api_base, data_sets)))


if __name__ == "__main__":
    main()
