"""Event-driven reconciliation: the inbox of Codat webhook deliveries (replacing `webhook_deliveries`), the
reads `read.completed` reported, the companies marked for the next reconciliation, and per connection the
time its state is from and the latest read reported for it.

Deliveries recorded by 0004 were acted on: they move into the inbox as done (their bodies were not kept).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies: a migration must not change when application code does.
UTC = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "codat_events",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=True),
        sa.Column("generated_at", UTC, nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claimed_until", UTC, nullable=True),
        sa.Column("processed_at", UTC, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name=op.f("ck_codat_events_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_codat_events")),
    )
    op.create_index(op.f("ix_codat_events_status_generated_at"), "codat_events", ["status", "generated_at"])
    op.execute(
        "INSERT INTO codat_events (id, event_type, company_id, generated_at, received_at, body, status, "
        "processed_at) SELECT id, event_type, company_id, generated_at, received_at, '{}', 'done', received_at "
        "FROM webhook_deliveries"
    )
    op.drop_table("webhook_deliveries")
    op.create_table(
        "read_observations",
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.Column("data_type", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("records_modified", sa.Integer(), nullable=True),
        sa.Column("generated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("event_id", "connection_id", "data_type", name=op.f("pk_read_observations")),
    )
    op.create_index(
        op.f("ix_read_observations_company_id_generated_at"), "read_observations", ["company_id", "generated_at"]
    )
    op.create_table(
        "reconcile_marks",
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.Column("first_marked_at", UTC, nullable=False),
        sa.Column("marked_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_reconcile_marks")),
    )
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("state_at", UTC, nullable=True))
        batch.add_column(sa.Column("last_read_at", UTC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("last_read_at")
        batch.drop_column("state_at")
    op.drop_table("reconcile_marks")
    op.drop_index(op.f("ix_read_observations_company_id_generated_at"), table_name="read_observations")
    op.drop_table("read_observations")
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=True),
        sa.Column("generated_at", UTC, nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.execute(
        "INSERT INTO webhook_deliveries (id, event_type, company_id, generated_at, received_at) "
        "SELECT id, event_type, company_id, generated_at, received_at FROM codat_events"
    )
    op.drop_index(op.f("ix_codat_events_status_generated_at"), table_name="codat_events")
    op.drop_table("codat_events")
