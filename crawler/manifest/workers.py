"""The workers table: who fetches from this manifest, since when, and how fast.

Every fetching process (``mirror`` and ``worker``) registers under its claim owner name, beats
every few seconds with its counters and its request rate since the last beat, and marks itself
stopped at the end. A process killed outright simply stops beating: ``status`` lists only
workers seen within ``LIVE_WITHIN``, so a dead one drops out by itself while its claims run out
with their lease. Timestamps come from ``Manifest.now``: the server's clock on Postgres.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from crawler.manifest.models import workers
from crawler.manifest.repository import Manifest

LIVE_WITHIN = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Beat:
    """What a worker reports about itself on each heartbeat."""

    requests: int = 0
    done: int = 0
    failed: int = 0
    bytes: int = 0
    rate: float = 0.0  # requests per second since the previous beat


async def register(manifest: Manifest, owner: str, command: str) -> None:
    """Announce a new fetching process."""
    now = manifest.now()
    await manifest.execute(
        workers.insert().values(
            id=owner,
            command=command,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=now,
            last_seen=now,
            **asdict(Beat()),
        ),
    )


async def beat(manifest: Manifest, owner: str, counters: Beat) -> None:
    """The periodic heartbeat: still alive, and these are the counters so far."""
    await manifest.execute(
        update(workers)
        .where(workers.c.id == owner)
        .values(last_seen=manifest.now(), **asdict(counters)),
    )


async def stopped(manifest: Manifest, owner: str, counters: Beat) -> None:
    """The last word of a process that ends normally (or is stopped by a signal)."""
    now = manifest.now()
    await manifest.execute(
        update(workers)
        .where(workers.c.id == owner)
        .values(last_seen=now, stopped_at=now, **asdict(counters) | {"rate": 0.0}),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") + "Z"
    return value


async def live(manifest: Manifest, within: timedelta = LIVE_WITHIN) -> list[dict[str, Any]]:
    """Workers that have not stopped and were seen within ``within``, oldest first."""
    statement = (
        select(workers)
        .where(workers.c.stopped_at.is_(None), workers.c.last_seen >= manifest.now() - within)
        .order_by(workers.c.started_at, workers.c.id)
    )
    rows = await manifest.read_mappings(statement)
    return [
        {key: _plain(value) for key, value in row.items() if key != "stopped_at"} for row in rows
    ]
