"""The connection snapshot: status transitions, last authorization, idempotent bulk upserts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import select

from consent_lifecycle.codat.models import Company
from consent_lifecycle.db.models import Company as CompanyRow
from consent_lifecycle.db.models import Connection as ConnectionRow
from consent_lifecycle.snapshot import merge_observation, observe, store

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
CREATED = datetime(2026, 6, 1, tzinfo=UTC)
COMPANY = "11111111-1111-4111-8111-111111111111"
ACCOUNTING = "22222222-2222-4222-8222-222222222222"
BANK = "33333333-3333-4333-8333-333333333333"


def company(bank_status: str | None = "Linked", *, region: str = "UK", company_id: str = COMPANY) -> Company:
    connections = [_connection(ACCOUNTING, "Accounting", "Linked")]
    if bank_status:
        connections.append(_connection(BANK, "Banking", bank_status))
    return Company.model_validate(
        {
            "id": company_id, "name": "Acme Ltd", "redirect": f"https://link.codat.io/company/{company_id}",
            "created": "2026-05-01T00:00:00Z", "tags": {"region": region}, "dataConnections": connections,
        }
    )


def _connection(connection_id: str, source_type: str, status: str) -> dict:
    return {
        "id": connection_id, "integrationId": "44444444-4444-4444-8444-444444444444",
        "sourceId": "55555555-5555-4555-8555-555555555555", "platformName": "P",
        "linkUrl": f"https://link-api.codat.io/companies/{COMPANY}/connections/{connection_id}/start",
        "status": status, "created": CREATED.isoformat(), "sourceType": source_type,
    }


def test_first_seen_linked_counts_as_authorized_when_codat_created_it():
    merged = merge_observation(pd.DataFrame(), observe([company()]).connections, T0).set_index("id")
    assert merged.loc[BANK, "last_authorized_at"] == CREATED  # conservative: expiry never estimated late
    assert merged.loc[BANK, "first_seen_at"] == T0 and merged.loc[BANK, "transition"] == "new"


def test_first_seen_not_linked_has_no_authorization():
    merged = merge_observation(pd.DataFrame(), observe([company("PendingAuth")]).connections, T0).set_index("id")
    assert pd.isna(merged.loc[BANK, "last_authorized_at"])


def test_reauthorization_is_seen_as_a_transition_to_linked():
    previous = pd.DataFrame(
        {
            "id": [BANK, ACCOUNTING], "status": ["Deauthorized", "Linked"],
            "first_seen_at": [CREATED, CREATED], "status_changed_at": [CREATED, CREATED],
            "last_authorized_at": [CREATED, CREATED],
        }
    )
    merged = merge_observation(previous, observe([company("Linked")]).connections, T0).set_index("id")
    assert merged.loc[BANK, "last_authorized_at"] == T0 and merged.loc[BANK, "transition"] == "changed"
    assert merged.loc[BANK, "status_changed_at"] == T0
    assert merged.loc[ACCOUNTING, "last_authorized_at"] == CREATED
    assert merged.loc[ACCOUNTING, "transition"] == "same" and merged.loc[ACCOUNTING, "status_changed_at"] == CREATED


def _rows(engine) -> dict[str, ConnectionRow]:
    with engine.connect() as db:
        return {row.id: row for row in db.execute(select(ConnectionRow)).all()}


def test_apply_is_idempotent_and_tracks_transitions(engine):
    first = store.apply_observation(engine, observe([company("Linked")]), T0)
    again = store.apply_observation(engine, observe([company("Linked")]), T0)
    assert (first.new, first.changed, again.new, again.changed) == (2, 0, 0, 0)
    assert _rows(engine)[BANK].last_authorized_at == CREATED

    later = T0 + timedelta(days=1)
    store.apply_observation(engine, observe([company("Deauthorized")]), later)
    back = T0 + timedelta(days=2)
    change = store.apply_observation(engine, observe([company("Linked")]), back)
    rows = _rows(engine)
    assert change.changed == 1 and rows[BANK].status == "Linked"
    assert rows[BANK].last_authorized_at == back and rows[BANK].status_changed_at == back
    assert rows[BANK].first_seen_at == T0 and rows[BANK].last_seen_at == back
    with engine.connect() as db:
        stored = db.execute(select(CompanyRow)).one()
    assert stored.jurisdiction == "uk" and stored.first_seen_at == T0 and stored.last_seen_at == back


def test_reconfirmation_survives_a_resync(engine):
    store.apply_observation(engine, observe([company()]), T0)
    with engine.begin() as db:
        db.execute(ConnectionRow.__table__.update().values(last_reconfirmed_at=T0 + timedelta(hours=1)))
    store.apply_observation(engine, observe([company()]), T0 + timedelta(days=1))
    assert _rows(engine)[BANK].last_reconfirmed_at == T0 + timedelta(hours=1)


def test_a_connection_codat_no_longer_lists_is_marked_deleted(engine):
    store.apply_observation(engine, observe([company("Linked")]), T0)
    change = store.apply_observation(engine, observe([company(None)]), T0 + timedelta(days=1))
    rows = _rows(engine)
    assert change.vanished == 1 and rows[BANK].deleted_at == T0 + timedelta(days=1)
    assert rows[ACCOUNTING].deleted_at is None
    counts = store.connection_counts(engine)
    assert counts == [{"source_type": "Accounting", "status": "Linked", "connections": 1}]


def test_a_company_missing_from_a_full_scan_is_retired(engine):
    other = "66666666-6666-4666-8666-666666666666"
    store.apply_observation(engine, observe([company()]), T0)
    later = T0 + timedelta(days=1)
    store.apply_observation(engine, observe([company(None, company_id=other).model_copy(update={"data_connections": []})]), later)
    assert store.retire_unseen_companies(engine, later) == 1
    assert all(row.deleted_at == later for row in _rows(engine).values())


class _Writes:
    """Counts the rows each INSERT (upsert) into a table was executed with."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.rows: dict[str, int] = {}
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO"):
            table = statement.split()[2].strip('"')
            count = len(parameters) if executemany else 1
            self.rows[table] = self.rows.get(table, 0) + count

    def close(self) -> None:
        from sqlalchemy import event

        event.remove(self._engine, "before_cursor_execute", self._seen)


def _other_company(name: str = "Other Ltd") -> Company:
    """A second company with its own Linked bank."""
    other = "66666666-6666-4666-8666-666666666666"
    return Company.model_validate(
        {
            "id": other, "name": name, "redirect": f"https://link.codat.io/company/{other}",
            "created": "2026-05-01T00:00:00Z", "tags": {"region": "UK"},
            "dataConnections": [_connection("77777777-7777-4777-8777-777777777777", "Banking", "Linked")],
        }
    )


def test_a_rescan_writes_only_new_and_changed_rows_and_marks_the_rest_seen(engine):
    other = "66666666-6666-4666-8666-666666666666"
    store.apply_observation(engine, observe([company(), _other_company()]), T0)
    writes = _Writes(engine)
    try:
        later = T0 + timedelta(days=1)
        same = store.apply_observation(engine, observe([company(), _other_company()]), later)
        assert writes.rows == {}  # nothing differs: no upsert at all
        assert (same.new, same.changed) == (0, 0)
        rows = _rows(engine)
        assert {row.last_seen_at for row in rows.values()} == {later}
        assert {row.first_seen_at for row in rows.values()} == {T0}
        with engine.connect() as db:
            assert {row.last_seen_at for row in db.execute(select(CompanyRow))} == {later}

        # one status change, one renamed company: exactly those rows are written again
        renamed = _other_company("Other Holdings Ltd")
        evenlater = T0 + timedelta(days=2)
        change = store.apply_observation(engine, observe([company("Deauthorized"), renamed]), evenlater)
        assert change.changed == 1
        assert writes.rows == {"connections": 1, "companies": 1}
        rows = _rows(engine)
        assert rows[BANK].status == "Deauthorized" and rows[BANK].status_changed_at == evenlater
        assert rows[ACCOUNTING].status_changed_at == T0 and rows[ACCOUNTING].last_seen_at == evenlater
        with engine.connect() as db:
            names = {row.id: (row.name, row.first_seen_at, row.last_seen_at) for row in db.execute(select(CompanyRow))}
        assert names[other] == ("Other Holdings Ltd", T0, evenlater) and names[COMPANY] == ("Acme Ltd", T0, evenlater)
    finally:
        writes.close()


def test_a_changed_codat_field_of_a_connection_is_written(engine):
    store.apply_observation(engine, observe([company()]), T0)
    moved = company()
    bank = moved.data_connections[1].model_copy(update={"link_url": "https://link.example/new", "platform_name": "Q"})
    moved = moved.model_copy(update={"data_connections": [moved.data_connections[0], bank]})
    change = store.apply_observation(engine, observe([moved]), T0 + timedelta(days=1))
    assert change.changed == 0  # not a status transition, but still written
    rows = _rows(engine)
    assert (rows[BANK].link_url, rows[BANK].platform_name) == ("https://link.example/new", "Q")
    assert rows[ACCOUNTING].platform_name == "P"


def test_a_retired_company_seen_again_is_live_again(engine):
    store.apply_observation(engine, observe([company()]), T0)
    later = T0 + timedelta(days=1)
    with engine.begin() as db:
        db.execute(CompanyRow.__table__.update().values(deleted_at=later))
    store.apply_observation(engine, observe([company()]), later + timedelta(hours=1))
    with engine.connect() as db:
        stored = db.execute(select(CompanyRow)).one()
    assert stored.deleted_at is None and stored.first_seen_at == T0


def test_bulk_written_times_are_stored_as_the_column_type_stores_them(engine):
    """The snapshot's bulk upsert renders times itself on SQLite: the stored text must be what a typed
    write of the same instant stores (and read back the same)."""
    from sqlalchemy import text

    store.apply_observation(engine, observe([company()]), T0 + timedelta(microseconds=7))
    columns = ("created_at", "first_seen_at", "last_authorized_at")
    with engine.begin() as db:
        bulk = db.execute(text(f"SELECT {', '.join(columns)} FROM connections WHERE id = :id"), {"id": BANK}).one()
        db.execute(  # the same instants through the column type, into other time columns of the row
            ConnectionRow.__table__.update()
            .where(ConnectionRow.id == BANK)
            .values(last_sync_at=CREATED, deleted_at=T0 + timedelta(microseconds=7), last_reconfirmed_at=CREATED)
        )
        typed = db.execute(
            text("SELECT last_sync_at, deleted_at, last_reconfirmed_at FROM connections WHERE id = :id"), {"id": BANK}
        ).one()
        company_seen = db.execute(text("SELECT first_seen_at FROM companies")).scalar_one()
    assert tuple(bulk) == tuple(typed)
    assert company_seen == typed[1]
    row = _rows(engine)[BANK]
    assert (row.created_at, row.first_seen_at) == (CREATED, T0 + timedelta(microseconds=7))


def test_observing_plain_bodies_gives_the_frames_observing_models_gives():
    """`observe_dicts` (Codat's bodies as the lean page check leaves them, or as models dump them) equals
    `observe` of the models: ids, tags, jurisdiction, times to the microsecond, missing values."""
    from pydantic import TypeAdapter

    from consent_lifecycle.codat.models import LeanCompany
    from consent_lifecycle.snapshot import observe_dicts

    plain = {
        "id": COMPANY, "name": "Acme Ltd", "redirect": "https://link.codat.io/x", "created": "2026-05-01T00:00:00Z",
        "tags": {"region": " UK "}, "dataConnections": [
            {**_connection(ACCOUNTING, "Accounting", "Linked"), "created": "2026-06-01T00:00:00.123456",
             "lastSync": "2026-10-01T00:00:00+00:00"},
            {**_connection(BANK, "Banking", "Deauthorized"), "created": "2026-06-01T00:00:00Z", "lastSync": None},
        ],
    }
    other = {"id": ACCOUNTING.upper(), "name": "No Tags", "redirect": "https://link.codat.io/y"}  # no created
    models = [Company.model_validate(plain), Company.model_validate(other)]
    expected = observe(models)
    lean = [TypeAdapter(LeanCompany).validate_python(plain)]
    for bodies in (lean, [m.model_dump(mode="json", by_alias=True) for m in models]):
        got = observe_dicts(bodies)
        pd.testing.assert_frame_equal(got.companies, expected.companies.head(len(bodies)))
        pd.testing.assert_frame_equal(got.connections, expected.connections)
