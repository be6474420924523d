"""Notification delivery state: status, the current claim (worker, time), an index for due rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies: a migration must not change when application code does.
UTC = sa.DateTime(timezone=True)
NOTIFICATION_STATUSES = ("pending", "sending", "sent", "failed")


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("status", sa.String(16), server_default=sa.text("'pending'"), nullable=False))
        batch.add_column(sa.Column("claimed_at", UTC, nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.String(255), nullable=True))
        batch.create_check_constraint(
            op.f("ck_notifications_status"),
            "status IN (" + ", ".join(repr(s) for s in NOTIFICATION_STATUSES) + ")",
        )
        batch.create_index(op.f("ix_notifications_status_due_at"), ["status", "due_at"])
    # rows delivered before this revision
    op.execute("UPDATE notifications SET status = 'sent' WHERE sent_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index(op.f("ix_notifications_status_due_at"))
        batch.drop_constraint(op.f("ck_notifications_status"), type_="check")
        batch.drop_column("claimed_by")
        batch.drop_column("claimed_at")
        batch.drop_column("status")
