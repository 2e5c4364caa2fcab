"""Run reports: every mirror, sync and verify leaves a JSON file and a runs row for monitoring.

The report is written whatever the outcome (done, failed, interrupted, error), atomically, to
``OUT/.reports/<UTC timestamp>-<command>.json`` (an object when OUT is a bucket) unless
``--report FILE`` says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog

from crawler.config import Settings
from crawler.errors import AllenMirrorError, exit_code_for, first_error
from crawler.localstore import write_atomic
from crawler.manifest.database import safe_url
from crawler.manifest.repository import Manifest
from crawler.manifest.runs import finish_run, start_run
from crawler.redact import mask_text, mask_url
from crawler.session import RunReport

log = structlog.get_logger("crawler.reports")

REPORTS_DIR = ".reports"


def settings_document(settings: Settings) -> dict[str, Any]:
    """The settings of a run, JSON-ready, without secrets."""
    document = dataclasses.asdict(settings)
    document["out"] = settings.where
    document["metrics_file"] = str(settings.metrics_file) if settings.metrics_file else None
    document["manifest"] = safe_url(settings.manifest_url)
    document["api_base"] = mask_url(settings.api_base)
    return document


def report_name(command: str, started: datetime) -> str:
    """``.reports/20261121T153000.123456Z-mirror.json`` under OUT: to the microsecond, so two
    runs in the same second keep both reports, and the names sort in time order."""
    return f"{REPORTS_DIR}/{started.strftime('%Y%m%dT%H%M%S.%f')}Z-{command}.json"


async def write_report(
    settings: Settings, report_file: str | Path | None, name: str, data: bytes
) -> str:
    """Write the report to ``--report FILE`` or into OUT (its store: a directory or a bucket);
    where it went."""
    if report_file is None and settings.bucket_url:
        from crawler.output import open_store

        async with open_store(settings) as store:
            await store.put(name, data)
        return f"{settings.bucket_url}/{name}"
    path = Path(report_file or settings.out / name)
    await anyio.to_thread.run_sync(lambda: write_atomic(path, data, fsync=settings.fsync))
    return str(path)


def outcome_of(report: RunReport, error: BaseException | None) -> str:
    """ok | failed | interrupted | error."""
    if error is not None:
        return "error"
    if report.interrupted_by is not None:
        return "interrupted"
    return "failed" if report.exit_code else "ok"


def report_document(
    report: RunReport,
    settings: Settings,
    selection: dict[str, Any],
    *,
    run_id: int | None,
    started: datetime,
    finished: datetime,
    outcome: str,
    exit_code: int,
    error: str | None,
) -> dict[str, Any]:
    """Everything a monitor needs to judge a run without reading logs."""
    return {
        "report_version": 1,
        "run_id": run_id,
        "command": report.command,
        "selection": selection,
        "settings": settings_document(settings),
        "started": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "finished": finished.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "duration_s": round(report.seconds, 3),
        "outcome": outcome,
        "exit_code": exit_code,
        "error": error,
        "counts": report.counts(),
        "bytes": report.bytes,
        "failures": [
            {
                "url": failure.url,
                "error": failure.error,
                "http_status": failure.http_status,
                "attempts": failure.attempts,
            }
            for failure in report.failures
        ],
        # seconds since fetching started, items and bytes done by then: a throughput chart
        "timeline": [
            {"seconds": seconds, "done": done, "bytes": nbytes}
            for seconds, done, nbytes in report.timeline
        ],
    }


@asynccontextmanager
async def recorded_run(
    manifest: Manifest,
    settings: Settings,
    selection: dict[str, Any],
    report: RunReport,
    report_file: str | Path | None,
) -> AsyncIterator[int]:
    """Open a runs row, run the body (given the run's id, which tags what it plans), then write
    the report and close the row, shielded."""
    started = datetime.now(UTC)
    started_clock = time.monotonic()
    run_id = await start_run(manifest, report.command, selection, settings_document(settings))
    error: BaseException | None = None
    try:
        yield run_id
    except BaseException as raised:
        error = raised
        raise
    finally:
        with anyio.CancelScope(shield=True):
            if not report.seconds:
                report.seconds = time.monotonic() - started_clock
            problem = first_error(error) if error is not None else None
            cancelled = problem is not None and not isinstance(problem, Exception)
            if cancelled:
                problem = None
            outcome = outcome_of(report, problem)
            exit_code = exit_code_for(problem) if problem is not None else report.exit_code
            name = report_name(report.command, started)
            document = report_document(
                report,
                settings,
                selection,
                run_id=run_id,
                started=started,
                finished=datetime.now(UTC),
                outcome=outcome,
                exit_code=exit_code,
                error=mask_text(str(problem)) if problem is not None else None,
            )
            data = (json.dumps(document, indent=1) + "\n").encode()
            written: str | None = None
            try:
                written = await write_report(settings, report_file, name, data)
            except AllenMirrorError as exc:
                log.warning("report.not_written", path=str(report_file or name), error=str(exc))
            try:
                await finish_run(
                    manifest,
                    run_id,
                    outcome=outcome,
                    exit_code=exit_code,
                    counts=report.counts(),
                    nbytes=report.bytes,
                    report_path=written,
                )
            except AllenMirrorError as exc:
                log.warning("run.not_recorded", error=str(exc))
