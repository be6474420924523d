"""Each company's `lastSync` as the expiry scan's listing last saw it: with the connections' `lastSync`, the
change detector of the incremental reconciliation (a sync later than the last `read.completed` seen and the
last reconciliation is a read whose webhook was lost).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy: a migration must not change when application code does.
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("companies") as batch:
        batch.add_column(sa.Column("last_sync_at", UTC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("companies") as batch:
        batch.drop_column("last_sync_at")
