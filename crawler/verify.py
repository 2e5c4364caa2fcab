"""Verify: re-hash every done file against the manifest; ``--repair`` fetches the bad ones again.

Files are hashed in groups, one hand-off per group, on as many worker processes as cores for a
large mirror (threads for a small one), while the manifest is read in chunks, so memory stays
flat and the disk sets the pace. Bad items stay done but are flagged (the manifest's
``problem`` column), so a later ``mirror`` or ``sync`` fetches them again; ``--repair`` does it
now, through the same stages as ``mirror``, recording each repair as it lands. ``--decode``
also decodes every image fully (Pillow): the download checks walk a JPEG's structure but
cannot prove its entropy-coded data decodes.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from crawler.config import Settings
from crawler.errors import AllenMirrorError
from crawler.filecheck import Row, check_files, start_worker
from crawler.listing import open_existing, read_only
from crawler.manifest import Manifest, Status
from crawler.manifest.repository import Tally
from crawler.progress import RunProgress
from crawler.reports import recorded_run
from crawler.session import RunReport, owner_id, run_session
from crawler.signals import Stop

log = structlog.get_logger("crawler.verify")

# Files per hand-off to a hashing thread or process. A hand-off costs a few wake-ups and GIL
# trades (or a pickle); with 64 files per hop, 100,378 small files took 9 s against 0.7 s for
# sha256sum on two processes (issue 16).
GROUP = 1024
# Done files from which hashing moves to worker processes: a 1 kB file hashes with the GIL
# held, so threads take turns; below this, starting the processes (~0.1 s) costs more.
PROCESSES_FROM = 20_000
# One fresh interpreter forks the workers (spawn where there is no fork): nothing is forked
# from this multi-threaded process, and a worker imports crawler.filecheck alone.
START = multiprocessing.get_context(
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)


def decoded_kinds(rows: list[Row], decode: bool) -> frozenset[str]:
    """The kinds among ``rows`` whose files ``--decode`` decodes: the images (none without it)."""
    if not decode:
        return frozenset()
    from crawler.kinds import body_rule  # the kinds' rules import the client (aiohttp)

    return frozenset(kind for kind in {row[4] for row in rows} if body_rule(kind).image)


@contextmanager
def hashing_pool(processes: int) -> Iterator[ProcessPoolExecutor | None]:
    """``processes`` worker processes (``start_worker``: Ctrl-C is the parent's to answer), or
    None to hash on threads."""
    if processes <= 0:
        yield None
        return
    with ProcessPoolExecutor(processes, mp_context=START, initializer=start_worker) as pool:
        yield pool


async def find_problems(
    manifest: Manifest,
    out: Path,
    report: RunReport,
    progress: RunProgress,
    *,
    decode: bool = False,
    processes: bool = False,
) -> list[tuple[int, str]]:
    """Hash (and with ``decode``, decode) every done file, on ``cores`` worker processes when
    ``processes`` else on as many threads; count verified, missing and corrupt; (id, problem)
    of bad ones. The manifest is read while the files of its first rows are hashed."""
    problems: list[tuple[int, str]] = []
    cores = os.cpu_count() or 1
    # A thread waits for each group handed to a process; two per process keep a worker's next
    # group queued while it hashes one, instead of idle for a round trip through the parent.
    threads = anyio.CapacityLimiter(2 * cores if processes else cores)
    in_flight = anyio.Semaphore(2 * cores)  # groups read from the manifest and not yet hashed
    root = str(out)

    with hashing_pool(cores if processes else 0) as pool:

        def hash_group(rows: list[Row]) -> list[tuple[int, str]]:
            decoded = decoded_kinds(rows, decode)
            if pool is None:
                return check_files(root, rows, decoded)
            try:
                return pool.submit(check_files, root, rows, decoded).result()
            except BrokenProcessPool as exc:  # a worker was killed (out of memory, a signal)
                raise AllenMirrorError(
                    "a hashing worker process died; nothing was flagged, run verify again"
                ) from exc

        async def check(rows: list[Row]) -> None:
            try:
                found = await anyio.to_thread.run_sync(hash_group, rows, limiter=threads)
            finally:
                in_flight.release()
            report.verified += len(rows)
            progress.advance(len(rows), sum(row[2] for row in rows))
            for position, state in found:
                item_id, path = rows[position][0], rows[position][1]
                problems.append((item_id, state))
                if state == "missing":
                    report.missing += 1
                else:
                    report.corrupt += 1
                log.warning("verify.problem", path=path, problem=state)

        async def read(send: MemoryObjectSendStream[list[Row]]) -> None:
            async with send:
                async for chunk in manifest.done_digests():
                    await send.send(chunk)

        chunks, received = anyio.create_memory_object_stream[list[Row]](1)
        async with anyio.create_task_group() as group, received:
            group.start_soon(read, chunks)  # the next chunk is read while this one is hashed
            async for chunk in received:
                for start in range(0, len(chunk), GROUP):
                    await in_flight.acquire()
                    group.start_soon(check, chunk[start : start + GROUP])
    return sorted(problems)


async def check_done_files(
    manifest: Manifest, settings: Settings, report: RunReport, *, decode: bool
) -> list[tuple[int, str]]:
    """Every done file checked, with a progress bar."""
    with RunProgress(settings.progress, "verify") as progress:
        tallies = await manifest.tallies()
        files = tallies.get(Status.DONE.value, Tally()).items
        progress.set_total(files)
        if settings.bucket_url:
            from crawler.objectverify import find_object_problems

            return await find_object_problems(manifest, settings, report, progress, decode=decode)
        return await find_problems(
            manifest,
            settings.out,
            report,
            progress,
            decode=decode,
            processes=files >= PROCESSES_FROM,
        )


async def verify_read_only(settings: Settings, *, decode: bool) -> RunReport:
    """A mirror that cannot be written (a read-only mount, a snapshot): its files are checked
    and the problems reported, but nothing is flagged, locked or recorded."""
    report = RunReport(command="verify")
    started = time.monotonic()
    log.info("verify.read_only", out=settings.where, flagged=False, report_written=False)
    manifest = await open_existing(settings.manifest_url)
    try:
        await check_done_files(manifest, settings, report, decode=decode)
    finally:
        await manifest.close()
    report.seconds = time.monotonic() - started
    return report


async def run_verify(
    settings: Settings,
    *,
    repair_files: bool = False,
    decode: bool = False,
    report_file: Path | None = None,
) -> RunReport:
    """Verify (and optionally repair) every done file of the mirror."""
    if not repair_files and read_only(settings.manifest_url):
        return await verify_read_only(settings, decode=decode)
    report = RunReport(command="verify")
    started = time.monotonic()
    stop = Stop()
    async with (
        run_session(settings, "verify", must_exist=True) as manifest,
        recorded_run(manifest, settings, {}, report, report_file),
    ):
        problems = await check_done_files(manifest, settings, report, decode=decode)
        await manifest.flag_problems(problems)
        if repair_files and problems:
            from crawler.pipeline import fetch_pending, run_tools  # only a repair fetches
            from crawler.source import ListSource

            ids = [item_id for item_id, _ in problems]
            await manifest.mark_pending(ids, "file missing or corrupt on disk (verify --repair)")
            async with run_tools(settings, manifest, stop, "repair") as tools:
                source = ListSource(manifest, ids, stop)
                stats = await fetch_pending(
                    settings, manifest, tools, source, owner=owner_id(), command="verify"
                )
            report.repaired = stats.done
            report.failed = stats.failed
            report.failures = stats.failures
            report.bytes = stats.bytes
            report.requests = tools.client.requests
            report.retries = tools.client.retries
        report.seconds = time.monotonic() - started
        report.interrupted_by = stop.signal
    return report
