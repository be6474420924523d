"""The consent database: SQLAlchemy 2 typed models.

Table and column names are a contract: the migrations in `consent_lifecycle/migrations` create exactly
this schema (a test compares them). Change both together, in a new migration.

Conventions:
- Every timestamp is a `UTCDateTime`: aware UTC in, aware UTC out, naive refused. The models have no
  clock defaults: callers pass `now` (design: no hidden clock).
- `consent_events` is the append-only ledger. The database refuses UPDATE, DELETE (and TRUNCATE on
  PostgreSQL) with triggers created by the migration (and by `create_all`, see `_ledger_ddl`).
- Tables that hold observations (`consent_events`, `access_records`, `findings`) have no foreign keys, so
  recording what happened is never blocked; tables that hold state we own reference `companies`,
  `connections`, `data_types` and each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Final

from sqlalchemy import (
    DDL,
    CheckConstraint,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from consent_lifecycle.datatypes import CONNECTION_STATUSES, SOURCE_TYPES
from consent_lifecycle.db.types import BigIntPK, JSONType, UTCDateTime

CONSENT_EVENT_TYPES: Final[tuple[str, ...]] = ("granted", "extended", "reconfirmed", "revoked", "disconnected")
CONSENT_STATUSES: Final[tuple[str, ...]] = ("active", "revoked")
FINDING_KINDS: Final[tuple[str, ...]] = (
    "unconsented_sync_setting", "unconsented_pull", "pull_on_expired_connection", "missing_pull",
    "product_read_outside_consent",
)
DELETION_SCOPES: Final[tuple[str, ...]] = ("codat_connection", "local_store")
DELETION_STATUSES: Final[tuple[str, ...]] = ("planned", "held", "executing", "done", "cancelled", "failed")
#: pending -> sending (claimed) -> sent, or back to pending (retry), or failed (after the last attempt)
NOTIFICATION_STATUSES: Final[tuple[str, ...]] = ("pending", "sending", "sent", "failed")
CODAT_EVENT_STATUSES: Final[tuple[str, ...]] = ("pending", "done", "failed")

NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# lengths: Codat ids are uuids (36); data type keys are at most 29 characters
ID = 36
KEY = 64
NAME = 255


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[str]: JSONType}


class DataType(Base):
    """The 43 Codat data type keys, seeded by the first migration."""

    __tablename__ = "data_types"
    __table_args__ = (CheckConstraint(_in("source_type", SOURCE_TYPES), name="source_type"),)

    key: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    source_type: Mapped[str] = mapped_column(String(16))


class Company(Base):
    """A customer business as last seen at Codat (`companyId`)."""

    __tablename__ = "companies"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME))
    #: lower-case, from the Codat tag `region`; None = the catalog's default jurisdiction
    jurisdiction: Mapped[str | None] = mapped_column(String(KEY))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    redirect: Mapped[str] = mapped_column(Text)
    #: Codat's `created` (optional in the spec)
    created_at: Mapped[datetime | None]
    #: Codat's `lastSync` as the last listing saw it (the incremental reconciliation's change detector)
    last_sync_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class Connection(Base):
    """The connection snapshot: one Codat data connection as last seen, plus what we derived over time."""

    __tablename__ = "connections"
    __table_args__ = (
        CheckConstraint(_in("status", CONNECTION_STATUSES), name="status"),
        CheckConstraint(_in("source_type", SOURCE_TYPES), name="source_type"),
        Index(None, "source_type", "status"),
    )

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id"), index=True)
    source_type: Mapped[str] = mapped_column(String(16))
    platform_name: Mapped[str] = mapped_column(String(NAME))
    integration_key: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    link_url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    last_sync_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    status_changed_at: Mapped[datetime]
    #: first seen Linked, or the last Unlinked/Deauthorized -> Linked transition
    last_authorized_at: Mapped[datetime | None]
    #: the customer's last Open Banking reconfirmation
    last_reconfirmed_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    #: when the state above was true: the scan's `now`, or a connection event's `generatedDate` (an older
    #: event never overwrites newer state)
    state_at: Mapped[datetime | None]
    #: the latest `read.completed` that named this connection (its `generatedDate`): a `lastSync` later than
    #: this (and than the company's last reconciliation) is a read whose webhook never arrived
    last_read_at: Mapped[datetime | None]


class ConsentEvent(Base):
    """One entry of the append-only consent ledger. The database refuses UPDATE and DELETE."""

    __tablename__ = "consent_events"
    __table_args__ = (
        CheckConstraint(_in("event_type", CONSENT_EVENT_TYPES), name="event_type"),
        Index(None, "company_id", "product", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    consent_id: Mapped[str] = mapped_column(String(ID), index=True)
    company_id: Mapped[str] = mapped_column(String(ID))
    product: Mapped[str] = mapped_column(String(KEY))
    event_type: Mapped[str] = mapped_column(String(16))
    #: granted: the scope granted; extended: the data types added; revoked: the scope withdrawn (sorted keys)
    data_types: Mapped[list[str]]
    #: granted/revoked: the scope's connections; extended: those added; disconnected: those removed
    connection_ids: Mapped[list[str]]
    wording_version: Mapped[str | None] = mapped_column(String(KEY))
    actor: Mapped[str] = mapped_column(String(NAME))
    channel: Mapped[str] = mapped_column(String(KEY))
    reason: Mapped[str | None] = mapped_column(Text)
    #: when it happened (as the customer/actor did it)
    at: Mapped[datetime]
    #: when the engine wrote it
    recorded_at: Mapped[datetime]


class Consent(Base):
    """Current state of one company's consent to one product, derived from the ledger and kept beside it.

    One row per (company, product), ever: a grant after a revocation reactivates the same row (same id).
    The ledger event is written first; `last_event_id` points at it.
    """

    __tablename__ = "consents"
    __table_args__ = (
        UniqueConstraint("company_id", "product"),
        CheckConstraint(_in("status", CONSENT_STATUSES), name="status"),
        CheckConstraint(
            "(status = 'active' AND revoked_at IS NULL) OR (status = 'revoked' AND revoked_at IS NOT NULL)",
            name="revoked_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id"))
    product: Mapped[str] = mapped_column(String(KEY))
    status: Mapped[str] = mapped_column(String(16))
    wording_version: Mapped[str] = mapped_column(String(KEY))
    actor: Mapped[str] = mapped_column(String(NAME))
    channel: Mapped[str] = mapped_column(String(KEY))
    granted_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_event_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("consent_events.id"))


class ConsentDataType(Base):
    __tablename__ = "consent_data_types"

    consent_id: Mapped[str] = mapped_column(ForeignKey("consents.id", ondelete="CASCADE"), primary_key=True)
    data_type: Mapped[str] = mapped_column(ForeignKey("data_types.key"), primary_key=True, index=True)


class ConsentConnection(Base):
    __tablename__ = "consent_connections"

    consent_id: Mapped[str] = mapped_column(ForeignKey("consents.id", ondelete="CASCADE"), primary_key=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"), primary_key=True, index=True)


class AccessRecord(Base):
    """A product read a data type of a company (an observation: no foreign keys)."""

    __tablename__ = "access_records"
    __table_args__ = (Index(None, "company_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    product: Mapped[str] = mapped_column(String(KEY))
    company_id: Mapped[str] = mapped_column(String(ID))
    connection_id: Mapped[str | None] = mapped_column(String(ID))
    data_type: Mapped[str] = mapped_column(String(KEY))
    at: Mapped[datetime]
    recorded_at: Mapped[datetime]


class PullRecord(Base):
    """A Codat pull operation as last seen (an observation: no foreign keys), kept for reconciliation."""

    __tablename__ = "pull_operations"
    __table_args__ = (Index(None, "company_id", "connection_id", "data_type"),)

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    company_id: Mapped[str] = mapped_column(String(ID))
    connection_id: Mapped[str] = mapped_column(String(ID))
    data_type: Mapped[str] = mapped_column(String(KEY))
    status: Mapped[str] = mapped_column(String(32))
    requested: Mapped[datetime]
    completed: Mapped[datetime | None]
    seen_at: Mapped[datetime]


class ReconcileCursor(Base):
    """Per company: pulls requested before `pulls_seen_to` have been read (the next run reads from there)."""

    __tablename__ = "reconcile_cursors"

    company_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    pulls_seen_to: Mapped[datetime]
    reconciled_at: Mapped[datetime]


class CodatEvent(Base):
    """The inbox: each verified Codat webhook delivery, stored whole by its `webhook-id` before it is answered.

    pending -> done once its effects committed (in the same transaction), or back to pending with `attempts`
    and `last_error` when processing failed, or failed after the last attempt (its company is then marked for
    the night's reconciliation). A claim (`claimed_by`, `claimed_until`) is a lease: a processor that dies
    mid-batch leaves events that any processor may take again once the lease ran out.
    """

    __tablename__ = "codat_events"
    __table_args__ = (
        CheckConstraint(_in("status", CODAT_EVENT_STATUSES), name="status"),
        Index(None, "status", "generated_at"),
    )

    id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(KEY))
    company_id: Mapped[str | None] = mapped_column(String(ID))
    generated_at: Mapped[datetime]
    received_at: Mapped[datetime]
    #: the delivery's body as received (JSON text)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(NAME))
    claimed_until: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]


class ReadObservation(Base):
    """One entry of a `read.completed` event: Codat read `data_type` on `connection_id` at `generated_at`
    with `status` (an observation: no foreign keys)."""

    __tablename__ = "read_observations"
    __table_args__ = (Index(None, "company_id", "generated_at"),)

    event_id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    connection_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    data_type: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    company_id: Mapped[str] = mapped_column(String(ID))
    status: Mapped[str] = mapped_column(String(32))
    records_modified: Mapped[int | None]
    generated_at: Mapped[datetime]


class ReconcileMark(Base):
    """A company the next reconciliation must read from Codat, and why (`reasons`, sorted names). Cleared
    by the reconciliation of that company that commits at or after `marked_at`."""

    __tablename__ = "reconcile_marks"

    company_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    reasons: Mapped[list[str]] = mapped_column(default=list)
    first_marked_at: Mapped[datetime]
    marked_at: Mapped[datetime]


class Finding(Base):
    """A difference between entitlements and pulls, deduplicated by `key`."""

    __tablename__ = "findings"
    __table_args__ = (
        CheckConstraint(_in("kind", FINDING_KINDS), name="kind"),
        CheckConstraint("occurrences >= 1", name="occurrences"),
        Index(None, "company_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(NAME), unique=True)
    kind: Mapped[str] = mapped_column(String(KEY))
    company_id: Mapped[str] = mapped_column(String(ID))
    connection_id: Mapped[str | None] = mapped_column(String(ID))
    data_type: Mapped[str | None] = mapped_column(String(KEY))
    product: Mapped[str | None] = mapped_column(String(KEY))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    occurrences: Mapped[int] = mapped_column(default=1, server_default=text("1"))


class DeletionItem(Base):
    """Something to delete because no active consent covers it any more."""

    __tablename__ = "deletion_items"
    __table_args__ = (
        CheckConstraint(_in("scope", DELETION_SCOPES), name="scope"),
        CheckConstraint(_in("status", DELETION_STATUSES), name="status"),
        CheckConstraint(
            "scope <> 'codat_connection' OR (connection_id IS NOT NULL AND data_type IS NULL)",
            name="codat_connection_whole",
        ),
        CheckConstraint("attempts >= 0", name="attempts"),
        CheckConstraint("plan_version >= 1", name="plan_version"),
        Index(None, "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(NAME), unique=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id"), index=True)
    connection_id: Mapped[str | None] = mapped_column(ForeignKey("connections.id"))
    #: None = the whole connection
    data_type: Mapped[str | None] = mapped_column(ForeignKey("data_types.key"))
    scope: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    source_event_id: Mapped[int | None] = mapped_column(BigIntPK, ForeignKey("consent_events.id"))
    due_at: Mapped[datetime]
    plan_version: Mapped[int] = mapped_column(default=1, server_default=text("1"))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(NAME))
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)


class DeletionReceipt(Base):
    """Proof that one deletion item was executed: what, why, and which consents were checked."""

    __tablename__ = "deletion_receipts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("deletion_items.id"), unique=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id"), index=True)
    executed_at: Mapped[datetime]
    what: Mapped[dict[str, Any]]
    why: Mapped[str] = mapped_column(Text)
    consents_checked: Mapped[list[str]]
    codat_status: Mapped[int | None]
    rows_purged: Mapped[int | None]


class LegalHold(Base):
    """While unreleased, nothing of the company (or of `data_type` only) may be deleted."""

    __tablename__ = "legal_holds"
    __table_args__ = (
        CheckConstraint("released_at IS NULL OR released_at >= placed_at", name="released_after_placed"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id"), index=True)
    #: None = the whole company
    data_type: Mapped[str | None] = mapped_column(ForeignKey("data_types.key"))
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(NAME))
    placed_at: Mapped[datetime]
    released_at: Mapped[datetime | None]


class Notification(Base):
    """The outbox: one message per `key`, ever."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts"),
        CheckConstraint(_in("status", NOTIFICATION_STATUSES), name="status"),
        Index(
            "ix_notifications_pending", "due_at",
            sqlite_where=text("sent_at IS NULL"), postgresql_where=text("sent_at IS NULL"),
        ),
        Index(None, "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(NAME), unique=True)
    company_id: Mapped[str] = mapped_column(ForeignKey("companies.id"), index=True)
    connection_id: Mapped[str | None] = mapped_column(ForeignKey("connections.id"))
    kind: Mapped[str] = mapped_column(String(KEY))
    channel: Mapped[str] = mapped_column(String(KEY))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    due_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default=text("'pending'"))
    #: the current (or last) claim: a `sending` row whose claim is older than the lease is claimed again
    claimed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(NAME))



class ApiKey(Base):
    """A Consent API key: a product's (None: admin). Only its SHA-256 is kept; `prefix` tells keys apart."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("(product IS NULL) = admin", name="product_or_admin"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)  # the actor of its changes
    product: Mapped[str | None] = mapped_column(String(KEY))
    admin: Mapped[bool]
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    """A POST answered under an `Idempotency-Key` (`status_code` None while it is being answered)."""

    __tablename__ = "idempotency_keys"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))  # of method, path and body
    status_code: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class ApiSecret(Base):
    """The API's signing secrets (journey links, forms), the same for every worker and host."""

    __tablename__ = "api_secrets"

    name: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    value: Mapped[str] = mapped_column(String(NAME))


# --- the ledger's append-only triggers -------------------------------------------------------------
# The migration creates the same triggers (its own frozen copy); these make `create_all` agree, so a
# database built either way refuses to rewrite history.

LEDGER_MESSAGE = "consent_events is append-only"
SQLITE_LEDGER_TRIGGERS: Final[tuple[str, ...]] = tuple(
    f"CREATE TRIGGER consent_events_no_{op.lower()} BEFORE {op} ON consent_events "
    f"BEGIN SELECT RAISE(ABORT, '{LEDGER_MESSAGE}: {op} refused'); END"
    for op in ("UPDATE", "DELETE")
)
POSTGRES_LEDGER_DDL: Final[tuple[str, ...]] = (
    ("CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION '{LEDGER_MESSAGE}: % refused', TG_OP USING ERRCODE = 'restrict_violation'; END $$"),
    ("CREATE TRIGGER consent_events_no_update_delete BEFORE UPDATE OR DELETE ON consent_events "
    "FOR EACH ROW EXECUTE FUNCTION consent_events_append_only()"),
    ("CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only()"),
)

for _statement in SQLITE_LEDGER_TRIGGERS:
    event.listen(ConsentEvent.__table__, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in POSTGRES_LEDGER_DDL:
    event.listen(
        ConsentEvent.__table__, "after_create",
        DDL(_statement.replace("%", "%%")).execute_if(dialect="postgresql"),
    )
