"""``verify``'s finding gets a column: ``problem`` (missing | corrupt) instead of an error prefix.

Verify keeps a bad file's item done, so that it keeps reporting it, and flags it for the next
``mirror`` or ``sync`` to fetch again. The flag used to live in the error text (``verify: file
corrupt on disk``), matched by prefix; a column says it plainly. Existing flags are carried over.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PREFIX = "verify: file "
SUFFIX = " on disk"


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("problem", sa.String(16), nullable=True))
    for problem in ("missing", "corrupt"):
        op.execute(
            sa.text(
                "UPDATE items SET problem = :problem, error = NULL WHERE error = :flag"
            ).bindparams(problem=problem, flag=f"{PREFIX}{problem}{SUFFIX}")
        )


def downgrade() -> None:
    for problem in ("missing", "corrupt"):
        op.execute(
            sa.text("UPDATE items SET error = :flag WHERE problem = :problem").bindparams(
                problem=problem, flag=f"{PREFIX}{problem}{SUFFIX}"
            )
        )
    with op.batch_alter_table("items") as batch:
        batch.drop_column("problem")
