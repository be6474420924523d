"""The consent database: migrations, the append-only ledger, UTC times, constraints, models == migrations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, StatementError
from sqlalchemy.orm import Session

from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.db import models as m
from consent_lifecycle.db.engine import SQLITE_MMAP_BYTES, lock_company, make_engine, normalize_url
from consent_lifecycle.db.migrate import current, downgrade, head, upgrade
from consent_lifecycle.db.types import NaiveDatetimeError

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TABLES = {
    "data_types", "companies", "connections", "consent_events", "consents", "consent_data_types",
    "consent_connections", "access_records", "findings", "deletion_items", "deletion_receipts",
    "legal_holds", "notifications",
}


def company_row(company_id: str = "c-1", **overrides: Any) -> dict[str, Any]:
    row = {
        "id": company_id, "name": "Acme Ltd", "jurisdiction": "uk", "tags": {"region": "uk"},
        "redirect": f"https://link.codat.io/company/{company_id}", "created_at": T0,
        "first_seen_at": T0, "last_seen_at": T0,
    }
    return row | overrides


def connection_row(connection_id: str = "k-1", company_id: str = "c-1", **overrides: Any) -> dict[str, Any]:
    row = {
        "id": connection_id, "company_id": company_id, "source_type": "Banking", "platform_name": "Plaid",
        "integration_key": "ncdf", "status": "Linked", "link_url": "https://link-api.codat.io/x/start",
        "created_at": T0, "first_seen_at": T0, "last_seen_at": T0, "status_changed_at": T0,
        "last_authorized_at": T0,
    }
    return row | overrides


def event_row(**overrides: Any) -> dict[str, Any]:
    row = {
        "consent_id": "s-1", "company_id": "c-1", "product": "lending", "event_type": "granted",
        "data_types": ["balanceSheet", "invoices"], "connection_ids": ["k-1"], "wording_version": "w1",
        "actor": "customer:jane", "channel": "web", "at": T0, "recorded_at": T0,
    }
    return row | overrides


def consent_row(event_id: int, **overrides: Any) -> dict[str, Any]:
    row = {
        "id": "s-1", "company_id": "c-1", "product": "lending", "status": "active", "wording_version": "w1",
        "actor": "customer:jane", "channel": "web", "granted_at": T0, "updated_at": T0,
        "last_event_id": event_id,
    }
    return row | overrides


def seed(engine: Engine) -> int:
    """A company, a connection, one granted event and its consent; returns the event id."""
    with engine.begin() as conn:
        conn.execute(insert(m.Company), [company_row()])
        conn.execute(insert(m.Connection), [connection_row()])
        event_id = conn.execute(insert(m.ConsentEvent).returning(m.ConsentEvent.id), [event_row()]).scalar_one()
        conn.execute(insert(m.Consent), [consent_row(event_id)])
    return event_id


# --- migrations -------------------------------------------------------------------------------------


def test_upgrade_from_empty_then_again_is_a_no_op(empty_db_url: str) -> None:
    assert current(empty_db_url) is None
    upgrade(empty_db_url)
    assert current(empty_db_url) == head() == "0007"
    engine = make_engine(empty_db_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        assert TABLES <= tables
        upgrade(empty_db_url)  # nothing to do: would fail on the seeded primary keys otherwise
        assert current(empty_db_url) == head()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
            seeded = dict(conn.execute(select(m.DataType.key, m.DataType.source_type)).all())
        assert seeded == DATA_TYPE_SOURCE
        assert len(seeded) == 43
        assert set(sa.inspect(engine).get_table_names()) == tables
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    downgrade(empty_db_url, "base")
    assert current(empty_db_url) is None
    engine = make_engine(empty_db_url)
    try:
        assert not TABLES & set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    upgrade(empty_db_url)
    assert current(empty_db_url) == head()


def _diff(engine: Engine, metadata: sa.MetaData) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, metadata)


def test_models_match_the_migrations(engine: Engine) -> None:
    assert _diff(engine, m.Base.metadata) == []
    # and the comparison is not vacuous: a column the migrations lack is reported
    changed = sa.MetaData(naming_convention=m.NAMING_CONVENTION)
    for table in m.Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["consents"].append_column(sa.Column("extra", sa.Integer(), nullable=True))
    assert [d[0] for d in _diff(engine, changed)] == ["add_column"]


# --- the append-only ledger -------------------------------------------------------------------------


def _assert_ledger_refuses(engine: Engine, event_id: int) -> None:
    before = _event(engine, event_id)
    statements = [
        sa.update(m.ConsentEvent).where(m.ConsentEvent.id == event_id).values(product="dashboard"),
        sa.update(m.ConsentEvent).values(reason="rewritten"),
        sa.delete(m.ConsentEvent).where(m.ConsentEvent.id == event_id),
        sa.delete(m.ConsentEvent),
    ]
    if engine.dialect.name == "postgresql":
        statements.append(text("TRUNCATE consent_events CASCADE"))
    for statement in statements:
        with pytest.raises(DBAPIError, match="consent_events is append-only") as raised, engine.begin() as conn:
            conn.execute(statement)
        assert isinstance(raised.value, IntegrityError)
    assert _event(engine, event_id) == before


def _event(engine: Engine, event_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(m.ConsentEvent).where(m.ConsentEvent.id == event_id)).mappings().one())


def test_ledger_refuses_update_and_delete(engine: Engine) -> None:
    event_id = seed(engine)
    _assert_ledger_refuses(engine, event_id)
    # through the ORM too, and appending still works
    with Session(engine) as session:
        event = session.get(m.ConsentEvent, event_id)
        assert event is not None
        event.reason = "edited"
        with pytest.raises(IntegrityError, match="append-only"):
            session.commit()
    with engine.begin() as conn:
        conn.execute(insert(m.ConsentEvent), [event_row(event_type="revoked", at=T0 + timedelta(days=1))])
        assert conn.execute(select(func.count()).select_from(m.ConsentEvent)).scalar_one() == 2
    assert _event(engine, event_id)["reason"] is None


def test_create_all_builds_an_append_only_ledger_too(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        m.Base.metadata.create_all(engine)
        with engine.begin() as conn:
            event_id = conn.execute(
                insert(m.ConsentEvent).returning(m.ConsentEvent.id), [event_row()]
            ).scalar_one()
        _assert_ledger_refuses(engine, event_id)
    finally:
        engine.dispose()


# --- UTC times ----------------------------------------------------------------------------------------


def test_utc_datetime_round_trips_aware_utc(engine: Engine) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    created = datetime(2026, 3, 1, 18, 0, 0, 654321, tzinfo=india)  # 12:30:00.654321 UTC
    with engine.begin() as conn:
        conn.execute(insert(m.Company), [company_row(created_at=created, deleted_at=None)])
    with Session(engine) as session:
        company = session.get_one(m.Company, "c-1")
        assert company.created_at == created
        assert company.created_at is not None and company.created_at.tzinfo is UTC
        assert company.created_at == datetime(2026, 3, 1, 12, 30, 0, 654321, tzinfo=UTC)
        assert company.first_seen_at == T0 and company.first_seen_at.tzinfo is UTC
        assert company.deleted_at is None
        assert company.tags == {"region": "uk"}
        # comparisons in SQL use the same UTC instant whatever the offset of the bound value
        found = session.scalars(
            select(m.Company.id).where(m.Company.created_at > datetime(2026, 3, 1, 14, 29, tzinfo=india))
        ).all()
        assert found == ["c-1"]
        assert session.scalars(select(m.Company.id).where(m.Company.created_at > created)).all() == []


def test_utc_datetime_refuses_naive_input(engine: Engine) -> None:
    naive = company_row(first_seen_at=datetime(2026, 3, 1, 12, 0))
    with pytest.raises(StatementError, match="refuses the naive datetime 2026-03-01T12:00:00") as raised, \
            engine.begin() as conn:
        conn.execute(insert(m.Company), [naive])
    assert isinstance(raised.value.orig, NaiveDatetimeError)
    with pytest.raises(StatementError, match="needs a datetime"), engine.begin() as conn:
        conn.execute(insert(m.Company), [company_row(first_seen_at="2026-03-01T12:00:00Z")])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.Company)).scalar_one() == 0


# --- constraints -------------------------------------------------------------------------------------

VIOLATIONS = [
    pytest.param(m.Connection, connection_row("k-2", company_id="no-such-company"), id="fk-connection-company"),
    pytest.param(m.Connection, connection_row("k-2", status="Expired"), id="check-connection-status"),
    pytest.param(m.Connection, connection_row("k-2", source_type="Bank"), id="check-connection-source-type"),
    pytest.param(m.ConsentDataType, {"consent_id": "s-1", "data_type": "balancesheet"}, id="fk-data-type"),
    pytest.param(m.ConsentConnection, {"consent_id": "s-1", "connection_id": "k-9"}, id="fk-consent-connection"),
    pytest.param(m.ConsentEvent, event_row(event_type="deleted"), id="check-event-type"),
    pytest.param(m.Consent, "duplicate-consent", id="unique-company-product"),
    pytest.param(m.Consent, "revoked-without-time", id="check-revoked-at"),
    pytest.param(m.DeletionItem, {"data_type": "invoices"}, id="check-codat-connection-is-whole"),
    pytest.param(m.DeletionItem, {"status": "pending"}, id="check-deletion-status"),
    pytest.param(m.Finding, {"kind": "oops"}, id="check-finding-kind"),
    pytest.param(m.Notification, "duplicate-key", id="unique-notification-key"),
]


def _deletion_item(**overrides: Any) -> dict[str, Any]:
    row = {
        "key": "del-1", "company_id": "c-1", "connection_id": "k-1", "data_type": None,
        "scope": "codat_connection", "reason": "revoked", "due_at": T0, "status": "planned",
        "created_at": T0, "updated_at": T0,
    }
    return row | overrides


@pytest.mark.parametrize(("model", "row"), VIOLATIONS)
def test_constraints_refuse_bad_rows(engine: Engine, model: type[m.Base], row: Any) -> None:
    event_id = seed(engine)
    if row == "duplicate-consent":
        row = consent_row(event_id, id="s-2")
    elif row == "revoked-without-time":
        row = consent_row(event_id, id="s-2", product="dashboard", status="revoked")
    elif row == "duplicate-key":
        notification = {
            "key": "expiry:k-1:7d", "company_id": "c-1", "kind": "expiry_warning", "channel": "webhook",
            "payload": {}, "created_at": T0, "due_at": T0,
        }
        with engine.begin() as conn:
            conn.execute(insert(m.Notification), [notification])
        row = notification
    elif model is m.DeletionItem:
        row = _deletion_item(**row)
    elif model is m.Finding:
        row = {"key": "f-1", "company_id": "c-1", "detail": {}, "first_seen_at": T0, "last_seen_at": T0} | row
    with engine.connect() as conn:
        counted = select(func.count()).select_from(model)
        before = conn.execute(counted).scalar_one()
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(model), [row])
    with engine.connect() as conn:
        assert conn.execute(counted).scalar_one() == before


def test_valid_rows_are_accepted_and_defaults_apply(engine: Engine) -> None:
    event_id = seed(engine)
    with engine.begin() as conn:
        conn.execute(insert(m.ConsentDataType), [{"consent_id": "s-1", "data_type": "balanceSheet"}])
        conn.execute(insert(m.ConsentConnection), [{"consent_id": "s-1", "connection_id": "k-1"}])
        conn.execute(insert(m.DeletionItem), [_deletion_item(source_event_id=event_id)])
        conn.execute(
            insert(m.DeletionItem),
            [_deletion_item(key="del-2", scope="local_store", data_type="invoices", connection_id=None)],
        )
        item = conn.execute(select(m.DeletionItem).where(m.DeletionItem.key == "del-1")).mappings().one()
        assert (item["attempts"], item["plan_version"]) == (0, 1)
        # server defaults too (a row written without the ORM's Python defaults)
        conn.execute(
            text(
                "INSERT INTO findings (key, kind, company_id, detail, first_seen_at, last_seen_at) "
                "VALUES ('f-1', 'missing_pull', 'c-1', '{}', :t, :t)"
            ),
            {"t": T0},
        )
        assert conn.execute(select(m.Finding.occurrences)).scalar_one() == 1
        # a consent's children go with it
        conn.execute(sa.delete(m.Consent).where(m.Consent.id == "s-1"))
        assert conn.execute(select(func.count()).select_from(m.ConsentDataType)).scalar_one() == 0


# --- engines and locks ---------------------------------------------------------------------------------


def test_make_engine_sqlite_pragmas_and_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "consent.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30_000
            assert conn.exec_driver_sql("PRAGMA mmap_size").scalar_one() == SQLITE_MMAP_BYTES
        assert path.exists()
    finally:
        engine.dispose()


def test_postgres_urls_use_psycopg3() -> None:
    for url in ("postgresql://u@h:5432/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"):
        assert normalize_url(url).drivername == "postgresql+psycopg"
    assert normalize_url("postgresql://u:secret@h/db").password == "secret"
    with pytest.raises(ValueError, match="unsupported database mysql://u:\\*\\*\\*@h/db"):
        make_engine("mysql://u:secret@h/db")


def test_lock_company_serializes_writers_of_a_company(db_url: str, engine: Engine) -> None:
    seed(engine)
    other = make_engine(db_url, busy_timeout_ms=100)
    try:
        with engine.begin() as conn:
            lock_company(conn, "c-1")
            if engine.dialect.name == "postgresql":
                with other.begin() as second:
                    probe = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:k, 0))")
                    assert second.execute(probe, {"k": "company:c-1"}).scalar_one() is False
                    assert second.execute(probe, {"k": "company:c-2"}).scalar_one() is True
            else:
                with pytest.raises(OperationalError, match="database is locked"), other.begin() as second:
                    lock_company(second, "c-2")
        with other.begin() as second:  # released at commit
            lock_company(second, "c-1")
    finally:
        other.dispose()


def test_ids_are_uuid_sized(engine: Engine) -> None:
    company_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(insert(m.Company), [company_row(company_id)])
        assert conn.execute(select(m.Company.id)).scalar_one() == company_id
