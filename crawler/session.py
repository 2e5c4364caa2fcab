"""A run's session: its output (directory or bucket), lock and manifest, and what it reports.

Every command that changes a mirror opens one (``run_session``); the pipeline, sync, verify and
worker build on it rather than on each other.
"""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import anyio

from crawler.config import Settings
from crawler.errors import LockedError, UsageError
from crawler.listing import check_manifest_exists
from crawler.manifest import Manifest, open_manifest
from crawler.manifest.repository import Outcome
from crawler.output import open_store, output_lock
from crawler.recorder import FetchStats, Sample


@dataclass
class RunReport:
    """What a run did: for the summary, the exit code, the report file and the runs table."""

    # The counts a command's summary adds to the common ones.
    COMMAND_COUNTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "sync": ("removed", "pruned", "changed", "unchanged"),
        "verify": ("verified", "missing", "corrupt", "repaired"),
    }

    command: str
    data_sets: int = 0
    atlases: int = 0
    images: int = 0
    planned: int = 0
    estimated_bytes: int = 0  # of every planned item, from the plan's estimate model
    new_items: int = 0
    already_done: int = 0
    skipped_failed: int = 0
    done: int = 0
    failed: int = 0
    bytes: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    failures: list[Outcome] = field(default_factory=list)
    interrupted_by: int | None = None
    remaining: int = 0  # items still pending when the run ended
    removed: int = 0  # sync
    pruned: int = 0
    changed: int = 0
    unchanged: int = 0
    other_pending: int = 0  # mirror, sync: pending items other selections planned
    verified: int = 0  # verify
    missing: int = 0
    corrupt: int = 0
    repaired: int = 0
    timeline: list[Sample] = field(default_factory=list)  # the fetch's throughput samples
    unknown_data_sets: list[int] = field(default_factory=list)  # --ignore-missing skipped these

    @property
    def exit_code(self) -> int:
        """0 clean, 1 items failed or files bad, 128+signal when interrupted."""
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        unrepaired = self.missing + self.corrupt - self.repaired
        return 1 if self.failed or unrepaired > 0 else 0

    def absorb(self, stats: FetchStats, requests: int, retries: int) -> None:
        """Take over what a fetch did."""
        self.done += stats.done
        self.failed += stats.failed
        self.bytes += stats.bytes
        self.failures.extend(stats.failures)
        self.timeline.extend(stats.timeline)
        self.requests += requests
        self.retries += retries

    def counts(self) -> dict[str, int]:
        """The counts a report and the runs table keep."""
        return {
            "data_sets": self.data_sets,
            "images": self.images,
            "items_planned": self.planned,
            "new": self.new_items,
            "already_done": self.already_done,
            "downloaded": self.done,
            "unchanged": self.unchanged,
            "changed": self.changed,
            "removed": self.removed,
            "pruned": self.pruned,
            "failed": self.failed,
            "verified": self.verified,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "repaired": self.repaired,
            "skipped_failed": self.skipped_failed,
            "other_pending": self.other_pending,
            "requests": self.requests,
            "retries": self.retries,
        }

    def summary(self) -> dict[str, object]:
        """The run's summary event."""
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        return {
            "command": self.command,
            "data_sets": self.data_sets,
            "atlases": self.atlases,
            "images": self.images,
            "items_planned": self.planned,
            "estimated_bytes": self.estimated_bytes,
            "new_items": self.new_items,
            "skipped_failed": self.skipped_failed,
            "already_done": self.already_done,
            "done": self.done,
            "failed": self.failed,
            "other_pending": self.other_pending,
            "bytes": self.bytes,
            "requests": self.requests,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(rate, 2),
            "remaining": self.remaining,
            "unknown_data_sets": self.unknown_data_sets,
            "interrupted": signal.Signals(self.interrupted_by).name
            if self.interrupted_by
            else None,
        } | ({name: getattr(self, name) for name in self.COMMAND_COUNTS.get(self.command, ())})


def owner_id() -> str:
    """A claim owner name that tells people where a worker runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def check_output_dir(out: os.PathLike[str]) -> None:
    """Fail early, in one line, when OUT cannot hold a mirror."""
    path = os.fspath(out)
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError as exc:
        raise UsageError(f"output path {path} is not a directory") from exc
    except OSError as exc:
        raise UsageError(f"cannot create output directory {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {path} is not writable")


@asynccontextmanager
async def run_session(
    settings: Settings,
    command: str,
    *,
    must_exist: bool = False,
    locked_hint: str | None = None,
) -> AsyncIterator[Manifest]:
    """A run's manifest: OUT checked, the output lock held for SQLite, closed whatever happens.

    ``must_exist`` is for commands that read or finish a mirror and must not create one;
    ``locked_hint`` is added to the refusal when another run holds the lock.
    """
    if must_exist:  # before OUT is made: a mistyped path leaves nothing behind
        check_manifest_exists(settings.manifest_url)
    if settings.bucket_url:  # exists and lets us in, before anything is locked or recorded
        async with open_store(settings):
            pass
    else:
        check_output_dir(settings.out)
    database = sqlite_file(settings) if settings.exclusive else None
    lock = output_lock(settings, command, database)
    if lock is not None:
        try:
            lock.acquire()
        except LockedError as exc:
            if locked_hint is None:
                raise
            raise LockedError(f"{exc}; {locked_hint}") from None
    created = database is not None and not database.exists()
    try:
        manifest = await open_manifest(
            settings.manifest_url, retry_seconds=settings.manifest_retry_seconds
        )
        try:
            yield manifest
        except Exception:
            # A run that failed before planning anything leaves no empty manifest behind.
            if created and database is not None:
                with anyio.CancelScope(shield=True):
                    empty = not await manifest.tallies()
                    await manifest.close()
                if empty:
                    remove_sqlite(database)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await manifest.close()
    finally:
        if lock is not None:
            lock.release()


def sqlite_file(settings: Settings) -> Path | None:
    """The file of a SQLite manifest."""
    from sqlalchemy.engine import make_url

    database = make_url(settings.manifest_url).database
    return Path(database) if database else None


def remove_sqlite(database: Path) -> None:
    """A SQLite database and its WAL files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
