"""A path holds one file: ``superseded`` items, a path index, and the run that planned an item.

Changing an option that changes an image's URL but not its path (``--quality``, ``--range``, a
tile size) used to leave two live items on one path, each claiming the same file. Now the
newest plan's item is the live one and the others become ``superseded``; planning finds them by
``ix_items_path``. Manifests that already hold several live items per path keep the one whose
file is on disk (the latest fetched done item, else the newest item) and supersede the rest.

``plan_run``: the run (``runs.id``) that last planned the item, so ``mirror`` and ``sync`` fetch
what their own selection planned, not what other selections left pending.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SUPERSEDED = "superseded"
REASON = "superseded by another item of the same path (migration 0006)"


def keeper(rows: list[tuple[int, str, datetime | None]]) -> int:
    """Of several live items (id, status, fetched_at) on one path, the one to keep: the done
    item fetched last (its bytes are the file), else the newest item."""
    done = [row for row in rows if row[1] == "done"]
    if done:
        return max(done, key=lambda row: (row[2] or datetime.min, row[0]))[0]
    return max(row[0] for row in rows)


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("plan_run", sa.BigInteger(), nullable=True))
    op.create_index("ix_items_path", "items", ["path"])
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, path, status, fetched_at FROM items WHERE status <> :gone AND path IN "
            "(SELECT path FROM items WHERE status <> :gone GROUP BY path HAVING count(*) > 1)"
        ).bindparams(gone=SUPERSEDED)
    ).all()
    by_path: dict[str, list[tuple[int, str, Any]]] = defaultdict(list)
    for item_id, path, status, fetched_at in rows:
        by_path[path].append((int(item_id), str(status), fetched_at))
    losers = [r[0] for group in by_path.values() for r in group if r[0] != keeper(group)]
    for start in range(0, len(losers), 500):
        bind.execute(
            sa.text(
                "UPDATE items SET status = :gone, error = :reason, claimed_by = NULL, "
                "lease_until = NULL WHERE id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"gone": SUPERSEDED, "reason": REASON, "ids": losers[start : start + 500]},
        )


def downgrade() -> None:
    demote = "UPDATE items SET status = 'removed', error = :why WHERE status = :gone"
    op.execute(sa.text(demote).bindparams(why="superseded (downgraded from 0006)", gone=SUPERSEDED))
    op.drop_index("ix_items_path", table_name="items")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("plan_run")
