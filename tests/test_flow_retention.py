"""retention-enforcement through Prefect against the sandbox: the seed's scenario 5 and the safety switches."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import parse_iso
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.retention import store
from flows.connection_expiry_scan import connection_expiry_scan
from flows.retention_enforcement import retention_enforcement
from tests.fixtures_sandbox import SANDBOX_NOW, sandbox_client

pytestmark = pytest.mark.prefect
CATALOG = load_catalog()
DELETE_CONNECTION = "DELETE /companies/{companyId}/connections/{connectionId}"
LENDING_ONLY = ["balanceSheet", "profitAndLoss", "cashFlowStatement"]


@pytest.fixture
def world(flow_env, fresh_sandbox, sqlite_url):
    flow_env.setenv(
        "CONSENT_LOCAL_STORE_TABLES", json.dumps({"balanceSheet": "store_balance_sheets", "invoices": "store_invoices"})
    )
    asyncio.run(connection_expiry_scan(now=SANDBOX_NOW))
    engine = make_engine(sqlite_url)
    with sandbox_client(fresh_sandbox) as http:
        companies = http.get("/companies", params={"pageSize": 100}).json()["results"]
        http.delete("/_sandbox/requests").raise_for_status()
    company = next(
        c for c in companies for conn in c["dataConnections"]
        if conn["sourceType"] == "Accounting" and conn["status"] == "Linked"
    )
    xero = next(conn for conn in company["dataConnections"] if conn["sourceType"] == "Accounting"
                and conn["status"] == "Linked")
    other = next(c["id"] for c in companies if c["id"] != company["id"])
    with engine.begin() as db:  # the client's own store: rows of two companies
        for table in ("store_balance_sheets", "store_invoices"):
            db.execute(text(f"CREATE TABLE {table} (company_id TEXT, body TEXT)"))
            db.execute(text(f"INSERT INTO {table} VALUES (:a, 'x'), (:a, 'y'), (:b, 'z')"),
                       {"a": company["id"], "b": other})
    ledger = Ledger(engine, CATALOG)
    linked = parse_iso(xero["created"])
    for product in ("dashboard", "lending"):
        ledger.grant(company["id"], product, connections=[xero["id"]], wording_version="v1", actor="customer",
                     channel="ui", at=linked)
    return {"engine": engine, "ledger": ledger, "company": company["id"], "xero": xero["id"], "other": other,
            "sandbox": fresh_sandbox}


def run(**parameters):
    state = asyncio.run(retention_enforcement(return_state=True, **parameters))
    return state, state.result(raise_on_failure=False)


def rows(world, table: str, company: str) -> int:
    with world["engine"].connect() as db:
        return db.execute(text(f"SELECT count(*) FROM {table} WHERE company_id = :c"), {"c": company}).scalar()


def deletes_at_codat(world) -> int:
    with sandbox_client(world["sandbox"]) as http:
        return sum(http.get("/_sandbox/requests").json()["by_status"].get(DELETE_CONNECTION, {}).values())


def test_scenario_5_lending_then_dashboard_revoked(world):
    company, ledger = world["company"], world["ledger"]
    t0 = SANDBOX_NOW
    ledger.revoke(company, "lending", actor="customer", channel="ui", at=t0, reason="loan repaid")

    state, summary = run(now=t0 + timedelta(days=1))
    assert (state.name, state.message) == ("Completed", "Nothing due: no deletion item is due")
    assert summary.planned_new >= len(LENDING_ONLY)
    planned = store.items(world["engine"], company, "planned")
    assert {i["data_type"] for i in planned} >= set(LENDING_ONLY)
    assert not {i["data_type"] for i in planned} & CATALOG.product("dashboard").required  # shared: kept
    assert all(i["scope"] == "local_store" for i in planned)  # Dashboard still reads the connection
    assert {i["due_at"] for i in planned} == {t0 + timedelta(days=30)}

    state, summary = run(now=t0 + timedelta(days=30, hours=1))
    assert state.is_completed() and summary.executed_done == len(planned)
    assert rows(world, "store_balance_sheets", company) == 0 and rows(world, "store_invoices", company) == 2
    assert rows(world, "store_balance_sheets", world["other"]) == 1  # another company's rows untouched
    receipts = store.receipts(world["engine"], company)
    assert len(receipts) == len(planned) and deletes_at_codat(world) == 0
    balance = next(r for r in receipts if r["what"]["data_type"] == "balanceSheet")
    assert balance["rows_purged"] == 2 and balance["consents_checked"]  # Dashboard's consent was checked

    t1 = t0 + timedelta(days=40)
    ledger.revoke(company, "dashboard", actor="customer", channel="ui", at=t1, reason="closed account")
    run(now=t1 + timedelta(days=1))
    (connection_item,) = [i for i in store.items(world["engine"], company, "planned") if i["scope"] == "codat_connection"]
    assert connection_item["connection_id"] == world["xero"] and connection_item["due_at"] == t1 + timedelta(days=7)
    run(now=t1 + timedelta(days=8))
    run(now=t1 + timedelta(days=9))  # a rerun: nothing twice
    assert deletes_at_codat(world) == 1
    assert rows(world, "store_invoices", company) == 0
    assert len(store.receipts(world["engine"], company)) == len(store.items(world["engine"], company, "done"))


def test_granting_again_before_due_cancels_and_a_hold_holds(world):
    company, ledger = world["company"], world["ledger"]
    t0 = SANDBOX_NOW
    ledger.revoke(company, "lending", actor="customer", channel="ui", at=t0, reason="changed mind")
    run(now=t0 + timedelta(days=1))
    assert store.items(world["engine"], company, "planned")
    ledger.grant(company, "lending", connections=[world["xero"]], wording_version="v1", actor="customer",
                 channel="ui", at=t0 + timedelta(days=2))
    _, summary = run(now=t0 + timedelta(days=31))
    assert summary.cancelled >= 3 and summary.due == 0
    assert rows(world, "store_balance_sheets", company) == 2 and not store.receipts(world["engine"], company)

    ledger.revoke(company, "lending", actor="customer", channel="ui", at=t0 + timedelta(days=32), reason="again")
    hold = ledger.add_hold(company, reason="litigation", actor="legal", at=t0 + timedelta(days=32))
    _, summary = run(now=t0 + timedelta(days=70))
    assert summary.held >= 3 and summary.due == 0 and rows(world, "store_balance_sheets", company) == 2
    ledger.release_hold(hold, at=t0 + timedelta(days=71))
    _, summary = run(now=t0 + timedelta(days=71))
    assert summary.executed_done >= 3 and rows(world, "store_balance_sheets", company) == 0


def test_dry_run_kill_switch_and_cap_delete_nothing(world):
    from prefect.variables import Variable

    company, ledger = world["company"], world["ledger"]
    ledger.revoke(company, "lending", actor="customer", channel="ui", at=SANDBOX_NOW, reason="x")
    later = SANDBOX_NOW + timedelta(days=31)

    state, summary = run(now=later, dry_run=True)
    # Prefect's own state name (the UI's default filters hide custom ones); the message says it was a dry run
    assert state.name == "Completed" and state.message == f"Dry run: {summary.due} due, nothing deleted"
    assert summary.due >= 3
    state, _ = run(now=later, max_deletions=1)
    assert state.is_failed() and "exceed max_deletions=1" in state.message
    Variable.set("consent-deletions-enabled", False, overwrite=True)
    try:
        state, _ = run(now=later)
        assert state.name == "Completed" and state.message.startswith("Deletions disabled: ")
    finally:
        Variable.set("consent-deletions-enabled", True, overwrite=True)
    assert not store.receipts(world["engine"]) and rows(world, "store_balance_sheets", company) == 2
    state, summary = run(now=later)
    assert state.is_completed() and summary.executed_done >= 3
