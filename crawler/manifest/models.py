"""Typed SQLAlchemy models of the manifest. The schema itself exists only through Alembic."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Table, Text
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

    __table_args__ = (
        Index("ix_items_status_id", "status", "id"),
        Index("ix_items_data_set_id", "data_set_id"),
    )


items = cast(Table, Item.__table__)
