"""Access checks: the fast single check, the set-wise batch and the ledger's replay (`is_permitted`) agree on
random consent states, on SQLite and PostgreSQL; every reason code is reachable; bad input names its row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from consent_lifecycle.access import is_permitted, record_accesses
from consent_lifecycle.access.check import check_access
from consent_lifecycle.access.facts import ASKED_COLUMNS
from consent_lifecycle.access.reasons import CODES, REASONS
from consent_lifecycle.access.single import Facts, check_one
from consent_lifecycle.catalog import CatalogError, load_catalog
from consent_lifecycle.codat.models import Company
from consent_lifecycle.db.models import AccessRecord
from consent_lifecycle.db.models import Connection as ConnectionRow
from consent_lifecycle.ledger import ConsentError, Ledger
from consent_lifecycle.snapshot import observe, store

CATALOG = load_catalog()
#: (name, source type, status) of each example's company: a UK company, so Banking expires after 90 days
CONNECTIONS = [
    ("acct", "Accounting", "Linked"),
    ("bank", "Banking", "Linked"),
    ("bank_deauthorized", "Banking", "Deauthorized"),
    ("shop", "Commerce", "Linked"),
    ("bank_gone", "Banking", "Linked"),  # deleted at Codat in some examples
    ("acct_pending", "Accounting", "PendingAuth"),
]
CREATED = datetime(2025, 12, 1, tzinfo=UTC)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DATA_TYPES = ["invoices", "balanceSheet", "banking-transactions", "commerce-orders"]
#: every history starts with these grants (default connections), so that most checks meet a consent
OPENING = [("grant", "lending", ["invoices", "banking-transactions"], []), ("grant", "spend-insights", [], [])]
WHO = {"actor": "test", "channel": "api"}


def body(company_id: str, ids: dict[str, str], names: list[tuple[str, str, str]]) -> Company:
    connections = [
        {
            "id": ids[name], "integrationId": str(uuid.uuid4()), "sourceId": str(uuid.uuid4()),
            "platformName": name, "linkUrl": "https://link", "status": status, "created": CREATED.isoformat(),
            "sourceType": source,
        }
        for name, source, status in names
    ]
    return Company.model_validate(
        {"id": company_id, "name": "P", "redirect": "https://link", "tags": {"region": "UK"},
         "dataConnections": connections}
    )


def new_company(engine, names=CONNECTIONS) -> tuple[str, dict[str, str]]:
    company_id = str(uuid.uuid4())
    ids = {name: str(uuid.uuid4()) for name, _, _ in names}
    store.apply_observation(engine, observe([body(company_id, ids, names)]), T0)
    return company_id, ids


def operations() -> st.SearchStrategy:
    product = st.sampled_from(["lending", "dashboard", "bank-feeds", "spend-insights"])
    conns = st.lists(st.sampled_from([n for n, _, _ in CONNECTIONS[:5]]), max_size=2, unique=True)
    scoped = product.flatmap(
        lambda p: st.tuples(
            st.sampled_from(["grant", "extend"]), st.just(p),
            st.lists(st.sampled_from(sorted(CATALOG.product(p).data_types)), max_size=3, unique=True), conns,
        )
    )
    return st.one_of(
        scoped, scoped,
        st.tuples(st.just("revoke"), product),
        st.tuples(st.just("disconnect"), st.sampled_from([n for n, _, _ in CONNECTIONS[:5]])),
    )


def apply(ledger: Ledger, company_id: str, ids: dict[str, str], op: tuple, at: datetime) -> None:
    """Run `op`; a refusal (invalid in this state) is part of a random history."""
    try:
        if op[0] == "grant":
            ledger.grant(company_id, op[1], data_types=op[2] or None, connections=[ids[c] for c in op[3]] or None,
                         wording_version="w1", at=at, **WHO)
        elif op[0] == "extend":
            ledger.extend(company_id, op[1], data_types=op[2], connections=[ids[c] for c in op[3]], at=at, **WHO)
        elif op[0] == "revoke":
            ledger.revoke(company_id, op[1], reason="test", at=at, **WHO)
        else:
            ledger.disconnect(company_id, ids[op[1]], at=at, **WHO)
    except ConsentError:
        pass


def all_checks(company_id: str, ids: dict[str, str], other_connection: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"company_id": company_id, "product": product, "connection_id": connection, "data_type": data_type}
            for product in CATALOG.products
            for connection in [*ids.values(), other_connection]
            for data_type in DATA_TYPES
        ]
    )


def replayed(ledger: Ledger, company_id: str, at: datetime) -> set[tuple[str, str, str]]:
    """(product, connection, data type) the ledger's replay permits at `at`: what `is_permitted` reads."""
    entitled = ledger.entitlements(company_id, as_of=at)
    return {(p, r["connection_id"], r["data_type"]) for r in entitled.to_dict("records") for p in r["products"]}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(operations(), min_size=1, max_size=10),
    gaps=st.lists(st.integers(0, 72), min_size=10, max_size=10),
    delete_gone=st.booleans(),
    reconfirmed_days=st.one_of(st.none(), st.integers(0, 60)),
    later_days=st.sampled_from([0, 30, 75, 120]),
)
def test_single_batch_and_replay_agree(engine, ops, gaps, delete_gone, reconfirmed_days, later_days):
    ledger = Ledger(engine, CATALOG)
    company_id, ids = new_company(engine)
    _, other = new_company(engine, CONNECTIONS[:1])
    at = T0
    for op, gap in zip([*OPENING, *ops], [0, 0, *gaps], strict=False):
        at += timedelta(hours=gap, seconds=1)
        apply(ledger, company_id, ids, op, at)
    if delete_gone:  # Codat no longer lists it
        kept = [c for c in CONNECTIONS if c[0] != "bank_gone"]
        store.apply_observation(engine, observe([body(company_id, ids, kept)]), at)
    if reconfirmed_days is not None:
        with engine.begin() as db:
            db.execute(update(ConnectionRow).where(ConnectionRow.id == ids["bank"])
                       .values(last_reconfirmed_at=T0 + timedelta(days=reconfirmed_days)))
    now = at + timedelta(days=later_days, seconds=1)
    middle = T0 + (at - T0) / 2
    checks = all_checks(company_id, ids, other["acct"])

    batch = check_access(engine, CATALOG, checks, now)
    assert list(batch.index) == list(checks.index) and set(batch["reason"]) <= set(CODES)
    expected = replayed(ledger, company_id, now)
    for row in batch.to_dict("records"):
        key = (row["product"], row["connection_id"], row["data_type"])
        assert row["permitted"] == (key in expected), row
        single = check_one(engine, CATALOG, row["company_id"], row["product"], row["connection_id"],
                           row["data_type"], now=now)
        assert (single.permitted, single.reason) == (row["permitted"], row["reason"])
    for row in batch.sample(3, random_state=len(ops)).to_dict("records"):  # the replay itself, as the CLI calls it
        assert is_permitted(engine, CATALOG, row["product"], row["company_id"], row["data_type"], now,
                            connection_id=row["connection_id"]) == row["permitted"]

    past = check_access(engine, CATALOG, checks.assign(at=middle), now)
    expected = replayed(ledger, company_id, middle)
    assert list(past["permitted"]) == [
        (r["product"], r["connection_id"], r["data_type"]) in expected for r in checks.to_dict("records")
    ]
    for row in past.sample(2, random_state=len(ops)).to_dict("records"):
        single = check_one(engine, CATALOG, row["company_id"], row["product"], row["connection_id"],
                           row["data_type"], now=now, at=middle)
        assert (single.permitted, single.reason) == (row["permitted"], row["reason"])


def test_the_single_check_reads_the_batch_statement_by_position():
    assert list(Facts._fields) == ASKED_COLUMNS


def test_each_reason_code(engine):
    ledger = Ledger(engine, CATALOG)
    company_id, ids = new_company(engine)
    _, other = new_company(engine, CONNECTIONS[:1])
    ledger.grant(company_id, "lending", data_types=["invoices", "banking-transactions"],
                 connections=[ids["acct"], ids["bank"], ids["bank_gone"]], wording_version="w1", at=T0, **WHO)
    ledger.grant(company_id, "dashboard", wording_version="w1", at=T0, **WHO)
    ledger.revoke(company_id, "dashboard", reason="test", at=T0 + timedelta(hours=1), **WHO)
    kept = [c for c in CONNECTIONS if c[0] != "bank_gone"]
    store.apply_observation(engine, observe([body(company_id, ids, kept)]), T0 + timedelta(hours=2))

    def row(product="lending", connection="acct", data_type="invoices", company=company_id):
        connection_id = other["acct"] if connection == "other" else ids.get(connection, connection)
        return {"company_id": company, "product": product, "connection_id": connection_id, "data_type": data_type}

    cases = {
        "unknown_company": row(company=str(uuid.uuid4())),
        "connection_not_of_company": row(connection="other"),
        "no_consent": row(product="bank-feeds"),
        "consent_revoked": row(product="dashboard"),
        "data_type_not_consented": row(data_type="balanceSheet"),
        "connection_not_consented": row(connection="shop"),
        "data_type_not_on_connection": row(data_type="banking-transactions"),
        "connection_not_linked": row(connection="bank_gone", data_type="banking-transactions"),
        "connection_expired": row(connection="bank", data_type="banking-transactions"),
        "permitted": row(),
    }
    assert list(cases) == list(REASONS)
    now = CREATED + timedelta(days=91)  # the UK bank connection's 90 days are over
    result = check_access(engine, CATALOG, pd.DataFrame(list(cases.values()), index=list(cases)), now)
    assert dict(zip(result.index, result["reason"], strict=True)) == {code: code for code in cases}
    assert list(result["permitted"]) == [code == "permitted" for code in cases]
    for code, values in cases.items():
        decision = check_one(engine, CATALOG, **values, now=now)
        assert (decision.reason, decision.permitted) == (code, code == "permitted")
        assert values["connection_id"] in decision.message or code in ("unknown_company", "no_consent",
                                                                        "consent_revoked", "data_type_not_consented")


def test_bad_rows_are_named_and_nothing_is_written(engine):
    company_id, ids = new_company(engine)
    good = {"company_id": company_id, "product": "lending", "connection_id": ids["acct"], "data_type": "invoices"}
    with pytest.raises(CatalogError, match=r"checks\[1\]: unknown product 'lendng'"):
        check_access(engine, CATALOG, pd.DataFrame([good, {**good, "product": "lendng"}]), T0)
    with pytest.raises(ConsentError, match=r"checks\[2\]: unknown Codat data type 'invoice'"):
        check_access(engine, CATALOG, pd.DataFrame([good, good, {**good, "data_type": "invoice"}]), T0)
    with pytest.raises(ConsentError, match=r"checks\[0\]: connection_id must be a non-empty string"):
        check_access(engine, CATALOG, pd.DataFrame([{**good, "connection_id": None}]), T0)
    with pytest.raises(CatalogError, match="unknown product 'nope'"):
        check_one(engine, CATALOG, company_id, "nope", ids["acct"], "invoices", now=T0)

    read = {**good, "at": T0}
    with pytest.raises(ConsentError, match=r"records\[1\]: unknown Codat data type 'invoice'"):
        record_accesses(engine, CATALOG, pd.DataFrame([read, {**read, "data_type": "invoice"}]), T0)
    with pytest.raises(ConsentError, match=r"records\[1\]: at must be a time"):
        record_accesses(engine, CATALOG, pd.DataFrame([read, {**read, "at": None}]), T0)
    with engine.connect() as db:
        assert db.execute(select(func.count()).select_from(AccessRecord)).scalar_one() == 0


def test_no_checks_no_answers(engine):
    empty = pd.DataFrame(columns=["company_id", "product", "connection_id", "data_type"])
    result = check_access(engine, CATALOG, empty, T0)
    assert result.empty and list(result.columns) == [*empty.columns, "permitted", "reason"]


def test_record_accesses_writes_every_row_in_one_go(engine):
    company_id, ids = new_company(engine)
    reads = pd.DataFrame(
        [
            {"company_id": company_id, "product": "lending", "connection_id": ids["acct"], "data_type": "invoices",
             "at": T0 + timedelta(minutes=i)}
            for i in range(5)
        ]
        + [{"company_id": company_id, "product": "dashboard", "connection_id": None, "data_type": "bills", "at": T0}]
    )
    ids_written = record_accesses(engine, CATALOG, reads, T0 + timedelta(hours=1))
    assert len(ids_written) == 6 and ids_written == sorted(ids_written)
    with engine.connect() as db:
        rows = db.execute(select(AccessRecord.__table__).order_by(AccessRecord.id)).all()
    assert [r.id for r in rows] == ids_written
    assert [r.at for r in rows] == list(reads["at"]) and rows[-1].connection_id is None
    assert {r.recorded_at for r in rows} == {T0 + timedelta(hours=1)}
    assert record_accesses(engine, CATALOG, reads.iloc[:0], T0) == []
