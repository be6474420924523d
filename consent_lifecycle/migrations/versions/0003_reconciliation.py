"""Reconciliation: the pull operations seen at Codat, and how far each company's pull history has been read.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies: a migration must not change when application code does.
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pull_operations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("data_type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("requested", UTC, nullable=False),
        sa.Column("completed", UTC, nullable=True),
        sa.Column("seen_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pull_operations")),
    )
    op.create_index(
        op.f("ix_pull_operations_company_id_connection_id_data_type"),
        "pull_operations", ["company_id", "connection_id", "data_type"],
    )
    op.create_table(
        "reconcile_cursors",
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("pulls_seen_to", UTC, nullable=False),
        sa.Column("reconciled_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_reconcile_cursors")),
    )


def downgrade() -> None:
    op.drop_table("reconcile_cursors")
    op.drop_index(op.f("ix_pull_operations_company_id_connection_id_data_type"), table_name="pull_operations")
    op.drop_table("pull_operations")
