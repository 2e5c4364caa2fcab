"""Typed SQLAlchemy models of the manifest. The schema itself exists only through Alembic."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, String, Table, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Status(StrEnum):
    """Where an item stands; ``removed`` is for items the API no longer lists."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    REMOVED = "removed"


class Base(DeclarativeBase):
    """Declarative base of the manifest models."""


class Item(Base):
    """One file of the mirror, keyed by its URL relative to the API base."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(Text, unique=True)
    url: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    data_set_id: Mapped[int] = mapped_column(BigInteger)
    image_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=Status.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    fetched_at: Mapped[datetime | None] = mapped_column(DateTime)
    previous_sha256: Mapped[str | None] = mapped_column(String(64))  # set while rechecking

    __table_args__ = (
        Index("ix_items_status_id", "status", "id"),
        Index("ix_items_tally", "data_set_id", "status", "size"),  # status: index-only
        Index(
            "ix_items_claimed_by",
            "claimed_by",
            postgresql_where=text("claimed_by IS NOT NULL"),
            sqlite_where=text("claimed_by IS NOT NULL"),
        ),
    )


class Run(Base):
    """One mirror, sync or verify run, for ``history`` and monitoring."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    command: Mapped[str] = mapped_column(String(32))
    selection: Mapped[str] = mapped_column(Text)  # JSON
    settings: Mapped[str] = mapped_column(Text)  # JSON
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    exit_code: Mapped[int | None] = mapped_column(Integer)
    counts: Mapped[str | None] = mapped_column(Text)  # JSON
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    report_path: Mapped[str | None] = mapped_column(Text)


class Worker(Base):
    """One fetching process (``mirror`` or ``worker``): heartbeats and counters for ``status``."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the claim owner name
    command: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen: Mapped[datetime] = mapped_column(DateTime, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    rate: Mapped[float] = mapped_column(Float, default=0.0)  # requests/s since the last beat


class RateLimit(Base):
    """The shared request budget of one API base: requests are reserved up to ``next_free``."""

    __tablename__ = "rate_limits"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    next_free: Mapped[float] = mapped_column(Float)  # database-clock epoch seconds


items = cast(Table, Item.__table__)
runs = cast(Table, Run.__table__)
workers = cast(Table, Worker.__table__)
rate_limits = cast(Table, RateLimit.__table__)
