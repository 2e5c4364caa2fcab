"""Workers and the shared request budget: what several fetching processes need to cooperate.

``workers``: one row per fetching process (``mirror`` or ``worker``), with heartbeats and
counters, so ``status`` can list who is fetching and how fast. ``rate_limits``: one row per API
base, the database-clock time from which requests are not yet reserved (the shared ``--rate``).
A partial index on ``items.claimed_by`` keeps renewing, releasing and listing claims cheap on a
manifest of millions of items.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("requests", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("done", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rate", sa.Float(), nullable=False, server_default="0"),
    )
    op.create_index("ix_workers_last_seen", "workers", ["last_seen"])
    op.create_table(
        "rate_limits",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("next_free", sa.Float(), nullable=False),
    )
    op.create_index(
        "ix_items_claimed_by",
        "items",
        ["claimed_by"],
        postgresql_where=sa.text("claimed_by IS NOT NULL"),
        sqlite_where=sa.text("claimed_by IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_items_claimed_by", table_name="items")
    op.drop_table("rate_limits")
    op.drop_index("ix_workers_last_seen", table_name="workers")
    op.drop_table("workers")
