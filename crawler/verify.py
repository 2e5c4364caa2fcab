"""Verify: re-hash every done file against the manifest; ``--repair`` fetches the bad ones again.

Hashing streams each file in a worker thread (1 MiB reads), so memory stays flat however large
the mirror. Missing and corrupt files go back to pending with the reason, so a later ``mirror``
or ``sync`` repairs them too; ``--repair`` does it now, through the same client and store.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from sqlalchemy import bindparam, update

from crawler.client import ApiClient
from crawler.config import Settings
from crawler.fetch import fetch_item
from crawler.manifest import Manifest, Status
from crawler.manifest.models import items
from crawler.manifest.repository import Claimed, Outcome, Tally
from crawler.pipeline import VERIFY_FLAG, RunReport, manifest_session
from crawler.progress import RunProgress
from crawler.reports import recorded_run

log = structlog.get_logger("crawler.verify")

READ_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Problem:
    """A done item whose file is not what the manifest recorded."""

    item: Claimed
    state: str  # missing | corrupt

    @property
    def id(self) -> int:
        return self.item.id


def file_state(path: Path, size: int, sha256: str | None) -> str | None:
    """None when the file matches; 'missing' or 'corrupt' otherwise (blocking)."""
    try:
        if path.stat().st_size != size:
            return "corrupt"
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(READ_SIZE):
                digest.update(chunk)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "missing"
    return None if digest.hexdigest() == sha256 else "corrupt"


async def find_problems(
    manifest: Manifest, out: Path, report: RunReport, progress: RunProgress
) -> list[Problem]:
    """Hash every done file; count verified, missing and corrupt."""
    problems: list[Problem] = []
    async for row in manifest.rows(Status.DONE.value):
        state = await anyio.to_thread.run_sync(
            file_state, out / str(row["path"]), int(row["size"] or 0), row["sha256"]
        )
        report.verified += 1
        progress.advance(1, int(row["size"] or 0))
        if state is not None:
            item = Claimed(
                id=int(row["id"]),
                ref=str(row["ref"]),
                path=str(row["path"]),
                kind=str(row["kind"]),
                data_set_id=int(row["data_set_id"]),
                image_id=row["image_id"],
            )
            problems.append(Problem(item, state))
            if state == "missing":
                report.missing += 1
            else:
                report.corrupt += 1
            log.warning("verify.problem", path=row["path"], problem=state)
    return problems


async def repair(
    settings: Settings, manifest: Manifest, problems: list[Problem], report: RunReport
) -> None:
    """Fetch the problem items again, ``concurrency`` at a time, recording each outcome."""
    send, receive = anyio.create_memory_object_stream[Problem](settings.concurrency)
    outcomes: list[Outcome] = []
    async with ApiClient.open(settings) as client:

        async def work(stream: anyio.abc.ObjectReceiveStream[Problem]) -> None:
            async with stream:
                async for problem in stream:
                    outcome = await fetch_item(client, settings.out, problem.item)
                    if outcome.status is Status.DONE:
                        report.repaired += 1
                        report.bytes += outcome.size or 0
                    else:
                        report.failed += 1
                        report.failures.append(outcome)
                    outcomes.append(outcome)

        async with anyio.create_task_group() as group:
            async with receive:
                for _ in range(settings.concurrency):
                    group.start_soon(work, receive.clone())
            async with send:
                for problem in problems:
                    await send.send(problem)
        report.requests = client.requests
        report.retries = client.retries
    await manifest.record(outcomes)


async def flag_problems(manifest: Manifest, problems: list[Problem]) -> None:
    """Keep bad items done (so verify keeps reporting them) but flag them for the next mirror."""
    for start in range(0, len(problems), 500):
        chunk = problems[start : start + 500]
        async with manifest.begin() as connection:
            await connection.execute(
                update(items)
                .where(items.c.id == bindparam("b_id"))
                .values(error=bindparam("b_error")),
                [{"b_id": p.id, "b_error": f"{VERIFY_FLAG}file {p.state} on disk"} for p in chunk],
            )


async def run_verify(
    settings: Settings, *, repair_files: bool = False, report_file: Path | None = None
) -> RunReport:
    """Verify (and optionally repair) every done file of the mirror."""
    report = RunReport(command="verify")
    started = time.monotonic()
    async with (
        manifest_session(settings, "verify", must_exist=True) as manifest,
        recorded_run(manifest, settings, {}, report, report_file),
    ):
        with RunProgress(settings.progress, "verify") as progress:
            tallies = await manifest.tallies()
            progress.set_total(tallies.get(Status.DONE.value, Tally()).items)
            problems = await find_problems(manifest, settings.out, report, progress)
        await flag_problems(manifest, problems)
        if repair_files and problems:
            await repair(settings, manifest, problems, report)
        report.seconds = time.monotonic() - started
    return report
