"""The manifest's tables, for building queries. The schema itself exists only through Alembic.

Plain SQLAlchemy Core tables: nothing here needs the ORM's mapped classes, and mapping them cost
every run a tenth of its start-up.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()


class Status(StrEnum):
    """Where an item stands; ``removed`` is for items the API no longer lists, ``superseded``
    for items whose path a newer plan gave to another URL (other quality, range or tile size):
    a path holds one live item."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    REMOVED = "removed"
    SUPERSEDED = "superseded"


# One file of the mirror, keyed by its URL relative to the API base.
items = Table(
    "items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ref", Text, nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("data_set_id", BigInteger, nullable=False),
    Column("image_id", BigInteger),
    Column("status", String(16), nullable=False, default=Status.PENDING),
    Column("attempts", Integer, nullable=False, default=0),
    Column("http_status", Integer),
    Column("error", Text),
    Column("size", BigInteger),
    Column("sha256", String(64)),
    Column("claimed_by", String(128)),
    Column("lease_until", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("fetched_at", DateTime),
    Column("previous_sha256", String(64)),  # set while rechecking
    Column("problem", String(16)),  # verify found the done file missing | corrupt
    Column("plan_run", BigInteger),  # the run that last planned it (mirror/sync fetch their own)
    Index("ix_items_status_id", "status", "id"),
    Index("ix_items_tally", "data_set_id", "status", "size"),  # status: index-only
    # Partial on both databases (migration 0003); PostgreSQL's clause is added in
    # migrations/env.py, so a SQLite run never loads the PostgreSQL dialect to check it.
    Index("ix_items_claimed_by", "claimed_by", sqlite_where=text("claimed_by IS NOT NULL")),
    Index("ix_items_path", "path"),  # planning supersedes the other items of a path
)

# One mirror, sync or verify run, for ``history`` and monitoring.
runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("command", String(32), nullable=False),
    Column("selection", Text, nullable=False),  # JSON
    Column("settings", Text, nullable=False),  # JSON
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("outcome", String(16), nullable=False, default="running"),
    Column("exit_code", Integer),
    Column("counts", Text),  # JSON
    Column("bytes", BigInteger),
    Column("report_path", Text),
)

# One fetching process (``mirror`` or ``worker``): heartbeats and counters for ``status``.
workers = Table(
    "workers",
    metadata,
    Column("id", String(128), primary_key=True),  # the claim owner name
    Column("command", String(32), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False, index=True),
    Column("stopped_at", DateTime),
    Column("requests", BigInteger, nullable=False, default=0),
    Column("done", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("rate", Float, nullable=False, default=0.0),  # requests/s since the last beat
)

# The shared request budget of one API base: requests are reserved up to ``next_free``.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("next_free", Float, nullable=False),  # database-clock epoch seconds
)


def add_postgresql_clauses() -> None:
    """The PostgreSQL-only parts of the tables, for Alembic's autogenerate (migrations/env.py)."""
    index = next(index for index in items.indexes if index.name == "ix_items_claimed_by")
    index.dialect_kwargs["postgresql_where"] = text("claimed_by IS NOT NULL")
