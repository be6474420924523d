"""Initial schema: snapshot, consent ledger and state, access records, findings, deletions, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-08-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies: a migration must not change when application code does.
UTC = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SOURCE_TYPES = ("Accounting", "Banking", "BankFeed", "Commerce", "Expense", "Other", "Unknown")
CONNECTION_STATUSES = ("PendingAuth", "Linked", "Unlinked", "Deauthorized")
CONSENT_EVENT_TYPES = ("granted", "extended", "reconfirmed", "revoked", "disconnected")
CONSENT_STATUSES = ("active", "revoked")
FINDING_KINDS = (
    "unconsented_sync_setting", "unconsented_pull", "pull_on_expired_connection", "missing_pull",
    "product_read_outside_consent",
)
DELETION_SCOPES = ("codat_connection", "local_store")
DELETION_STATUSES = ("planned", "held", "executing", "done", "cancelled", "failed")

DATA_TYPES = {
    "Accounting": (
        "accountTransactions", "balanceSheet", "bankAccounts", "bankTransactions", "billCreditNotes",
        "billPayments", "bills", "cashFlowStatement", "chartOfAccounts", "company", "creditNotes",
        "customers", "directCosts", "directIncomes", "invoices", "itemReceipts", "items", "journalEntries",
        "journals", "paymentMethods", "payments", "profitAndLoss", "purchaseOrders", "salesOrders",
        "suppliers", "taxRates", "trackingCategories", "transfers",
    ),
    "Banking": (
        "banking-accountBalances", "banking-accounts", "banking-transactionCategories", "banking-transactions",
    ),
    "Commerce": (
        "commerce-companyInfo", "commerce-customers", "commerce-disputes", "commerce-locations",
        "commerce-orders", "commerce-paymentMethods", "commerce-payments", "commerce-productCategories",
        "commerce-products", "commerce-taxComponents", "commerce-transactions",
    ),
}

LEDGER_MESSAGE = "consent_events is append-only"


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    data_types = op.create_table(
        "data_types",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("source_type", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_data_types")),
        sa.CheckConstraint(_in("source_type", SOURCE_TYPES), name=op.f("ck_data_types_source_type")),
    )
    op.bulk_insert(
        data_types,
        [{"key": key, "source_type": source} for source, keys in DATA_TYPES.items() for key in keys],
    )

    op.create_table(
        "companies",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("jurisdiction", sa.String(64), nullable=True),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("redirect", sa.Text(), nullable=False),
        sa.Column("created_at", UTC, nullable=True),
        sa.Column("first_seen_at", UTC, nullable=False),
        sa.Column("last_seen_at", UTC, nullable=False),
        sa.Column("deleted_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_companies")),
    )

    op.create_table(
        "connections",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("source_type", sa.String(16), nullable=False),
        sa.Column("platform_name", sa.String(255), nullable=False),
        sa.Column("integration_key", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("link_url", sa.Text(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("last_sync_at", UTC, nullable=True),
        sa.Column("first_seen_at", UTC, nullable=False),
        sa.Column("last_seen_at", UTC, nullable=False),
        sa.Column("status_changed_at", UTC, nullable=False),
        sa.Column("last_authorized_at", UTC, nullable=True),
        sa.Column("last_reconfirmed_at", UTC, nullable=True),
        sa.Column("deleted_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_connections_company_id_companies")),
        sa.CheckConstraint(_in("status", CONNECTION_STATUSES), name=op.f("ck_connections_status")),
        sa.CheckConstraint(_in("source_type", SOURCE_TYPES), name=op.f("ck_connections_source_type")),
    )
    op.create_index(op.f("ix_connections_company_id"), "connections", ["company_id"])
    op.create_index(op.f("ix_connections_source_type_status"), "connections", ["source_type", "status"])

    op.create_table(
        "consent_events",
        sa.Column("id", BIGPK, autoincrement=True, nullable=False),
        sa.Column("consent_id", sa.String(36), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(16), nullable=False),
        sa.Column("data_types", JSON, nullable=False),
        sa.Column("connection_ids", JSON, nullable=False),
        sa.Column("wording_version", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", UTC, nullable=False),
        sa.Column("recorded_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
        sa.CheckConstraint(_in("event_type", CONSENT_EVENT_TYPES), name=op.f("ck_consent_events_event_type")),
    )
    op.create_index(op.f("ix_consent_events_consent_id"), "consent_events", ["consent_id"])
    op.create_index(op.f("ix_consent_events_company_id_product_at"), "consent_events", ["company_id", "product", "at"]
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{LEDGER_MESSAGE}: % refused', TG_OP "
            "USING ERRCODE = 'restrict_violation'; END $$"
        )
        op.execute(
            "CREATE TRIGGER consent_events_no_update_delete BEFORE UPDATE OR DELETE ON consent_events "
            "FOR EACH ROW EXECUTE FUNCTION consent_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only()"
        )
    elif bind.dialect.name == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER consent_events_no_{operation.lower()} BEFORE {operation} ON consent_events "
                f"BEGIN SELECT RAISE(ABORT, '{LEDGER_MESSAGE}: {operation} refused'); END"
            )
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"no append-only triggers for {bind.dialect.name}")

    op.create_table(
        "consents",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("wording_version", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("granted_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.Column("last_event_id", BIGPK, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_consents_company_id_companies")),
        sa.ForeignKeyConstraint(
            ["last_event_id"], ["consent_events.id"], name=op.f("fk_consents_last_event_id_consent_events")
        ),
        sa.UniqueConstraint("company_id", "product", name=op.f("uq_consents_company_id_product")),
        sa.CheckConstraint(_in("status", CONSENT_STATUSES), name=op.f("ck_consents_status")),
        sa.CheckConstraint(
            "(status = 'active' AND revoked_at IS NULL) OR (status = 'revoked' AND revoked_at IS NOT NULL)",
            name=op.f("ck_consents_revoked_at"),
        ),
    )

    op.create_table(
        "consent_data_types",
        sa.Column("consent_id", sa.String(36), nullable=False),
        sa.Column("data_type", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("consent_id", "data_type", name=op.f("pk_consent_data_types")),
        sa.ForeignKeyConstraint(
            ["consent_id"], ["consents.id"], ondelete="CASCADE",
            name=op.f("fk_consent_data_types_consent_id_consents"),
        ),
        sa.ForeignKeyConstraint(
            ["data_type"], ["data_types.key"], name=op.f("fk_consent_data_types_data_type_data_types")
        ),
    )
    op.create_index(op.f("ix_consent_data_types_data_type"), "consent_data_types", ["data_type"])

    op.create_table(
        "consent_connections",
        sa.Column("consent_id", sa.String(36), nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("consent_id", "connection_id", name=op.f("pk_consent_connections")),
        sa.ForeignKeyConstraint(
            ["consent_id"], ["consents.id"], ondelete="CASCADE",
            name=op.f("fk_consent_connections_consent_id_consents"),
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_consent_connections_connection_id_connections")
        ),
    )
    op.create_index(op.f("ix_consent_connections_connection_id"), "consent_connections", ["connection_id"])

    op.create_table(
        "access_records",
        sa.Column("id", BIGPK, autoincrement=True, nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=True),
        sa.Column("data_type", sa.String(64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("recorded_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_records")),
    )
    op.create_index(op.f("ix_access_records_company_id_at"), "access_records", ["company_id", "at"])

    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=True),
        sa.Column("data_type", sa.String(64), nullable=True),
        sa.Column("product", sa.String(64), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("first_seen_at", UTC, nullable=False),
        sa.Column("last_seen_at", UTC, nullable=False),
        sa.Column("resolved_at", UTC, nullable=True),
        sa.Column("occurrences", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
        sa.UniqueConstraint("key", name=op.f("uq_findings_key")),
        sa.CheckConstraint(_in("kind", FINDING_KINDS), name=op.f("ck_findings_kind")),
        sa.CheckConstraint("occurrences >= 1", name=op.f("ck_findings_occurrences")),
    )
    op.create_index(op.f("ix_findings_company_id_kind"), "findings", ["company_id", "kind"])

    op.create_table(
        "deletion_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=True),
        sa.Column("data_type", sa.String(64), nullable=True),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source_event_id", BIGPK, nullable=True),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("plan_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claimed_at", UTC, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deletion_items")),
        sa.UniqueConstraint("key", name=op.f("uq_deletion_items_key")),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_deletion_items_company_id_companies")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_deletion_items_connection_id_connections")
        ),
        sa.ForeignKeyConstraint(
            ["data_type"], ["data_types.key"], name=op.f("fk_deletion_items_data_type_data_types")
        ),
        sa.ForeignKeyConstraint(
            ["source_event_id"], ["consent_events.id"],
            name=op.f("fk_deletion_items_source_event_id_consent_events"),
        ),
        sa.CheckConstraint(_in("scope", DELETION_SCOPES), name=op.f("ck_deletion_items_scope")),
        sa.CheckConstraint(_in("status", DELETION_STATUSES), name=op.f("ck_deletion_items_status")),
        sa.CheckConstraint(
            "scope <> 'codat_connection' OR (connection_id IS NOT NULL AND data_type IS NULL)",
            name=op.f("ck_deletion_items_codat_connection_whole"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_deletion_items_attempts")),
        sa.CheckConstraint("plan_version >= 1", name=op.f("ck_deletion_items_plan_version")),
    )
    op.create_index(op.f("ix_deletion_items_company_id"), "deletion_items", ["company_id"])
    op.create_index(op.f("ix_deletion_items_status_due_at"), "deletion_items", ["status", "due_at"])

    op.create_table(
        "deletion_receipts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("executed_at", UTC, nullable=False),
        sa.Column("what", JSON, nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("consents_checked", JSON, nullable=False),
        sa.Column("codat_status", sa.Integer(), nullable=True),
        sa.Column("rows_purged", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deletion_receipts")),
        sa.UniqueConstraint("item_id", name=op.f("uq_deletion_receipts_item_id")),
        sa.ForeignKeyConstraint(
            ["item_id"], ["deletion_items.id"], name=op.f("fk_deletion_receipts_item_id_deletion_items")
        ),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_deletion_receipts_company_id_companies")
        ),
    )
    op.create_index(op.f("ix_deletion_receipts_company_id"), "deletion_receipts", ["company_id"])

    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("data_type", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.String(255), nullable=False),
        sa.Column("placed_at", UTC, nullable=False),
        sa.Column("released_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_legal_holds_company_id_companies")),
        sa.ForeignKeyConstraint(
            ["data_type"], ["data_types.key"], name=op.f("fk_legal_holds_data_type_data_types")
        ),
        sa.CheckConstraint(
            "released_at IS NULL OR released_at >= placed_at", name=op.f("ck_legal_holds_released_after_placed")
        ),
    )
    op.create_index(op.f("ix_legal_holds_company_id"), "legal_holds", ["company_id"])

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("company_id", sa.String(36), nullable=False),
        sa.Column("connection_id", sa.String(36), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("sent_at", UTC, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("key", name=op.f("uq_notifications_key")),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_notifications_company_id_companies")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_notifications_connection_id_connections")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_notifications_attempts")),
    )
    op.create_index(op.f("ix_notifications_company_id"), "notifications", ["company_id"])
    op.create_index(op.f("ix_notifications_pending"), "notifications", ["due_at"],
        sqlite_where=sa.text("sent_at IS NULL"), postgresql_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    for table in (
        "notifications", "legal_holds", "deletion_receipts", "deletion_items", "findings", "access_records",
        "consent_connections", "consent_data_types", "consents", "consent_events", "connections",
        "companies", "data_types",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS consent_events_append_only()")
