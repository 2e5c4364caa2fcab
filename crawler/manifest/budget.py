"""The shared request budget: one ``rate_limits`` row per API base, on Postgres.

The row holds the database-clock time (epoch seconds) up to which requests are already
reserved. A worker reserves the next ``span`` seconds in one statement: the window starts at
that time or now, whichever is later, and the row moves to its end. Windows never overlap,
whichever host asks, so the sum of every worker's requests keeps to one rate; a worker that
dies loses only the window it held.
"""

from __future__ import annotations

from sqlalchemy import Float, cast, extract, func

from crawler.errors import ManifestError
from crawler.manifest.models import rate_limits
from crawler.manifest.repository import Manifest


async def reserve(manifest: Manifest, name: str, span: float) -> float:
    """Reserve ``span`` seconds of the budget ``name``: seconds from now until they begin."""
    if manifest.dialect != "postgresql":
        raise ManifestError("a shared rate limit needs a PostgreSQL manifest")
    from sqlalchemy.dialects import postgresql  # only shared budgets (Postgres) need it

    clock = cast(extract("epoch", func.clock_timestamp()), Float)
    statement = (
        postgresql.insert(rate_limits)
        .values(name=name, next_free=clock + span)
        .on_conflict_do_update(
            index_elements=["name"],
            set_={"next_free": func.greatest(rate_limits.c.next_free, clock) + span},
        )
        .returning(rate_limits.c.next_free - span - clock)
    )
    wait = (await manifest.execute(statement)).scalar_one()
    return max(0.0, float(wait))
