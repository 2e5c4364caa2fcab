"""The runs table: one row per mirror, sync or verify, so ``history`` and monitoring can read it."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from sqlalchemy import insert, select, update

from crawler.manifest.models import runs
from crawler.manifest.repository import Manifest
from crawler.retry import utcnow


async def start_run(
    manifest: Manifest, command: str, selection: dict[str, Any], settings: dict[str, Any]
) -> int:
    """Record that a run began; returns its id."""
    result = await manifest.execute(
        insert(runs)
        .values(
            command=command,
            selection=json.dumps(selection, sort_keys=True),
            settings=json.dumps(settings, sort_keys=True),
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=utcnow(),
            outcome="running",
        )
        .returning(runs.c.id)
    )
    return int(result.scalar_one())


async def finish_run(
    manifest: Manifest,
    run_id: int,
    *,
    outcome: str,
    exit_code: int,
    counts: dict[str, int],
    nbytes: int,
    report_path: str | None,
) -> None:
    """Record how a run ended."""
    await manifest.execute(
        update(runs)
        .where(runs.c.id == run_id)
        .values(
            finished_at=utcnow(),
            outcome=outcome,
            exit_code=exit_code,
            counts=json.dumps(counts, sort_keys=True),
            bytes=nbytes,
            report_path=report_path,
        )
    )


async def list_runs(manifest: Manifest, limit: int | None = None) -> list[dict[str, Any]]:
    """Runs, newest first, with their JSON columns decoded."""
    statement = select(runs).order_by(runs.c.id.desc())
    if limit is not None:
        statement = statement.limit(limit)
    result: list[dict[str, Any]] = []
    for entry in await manifest.read_mappings(statement):
        for name in ("selection", "settings", "counts"):
            entry[name] = json.loads(entry[name]) if entry[name] else None
        result.append(entry)
    return result
