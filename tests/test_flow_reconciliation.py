"""consent-reconciliation through Prefect against the sandbox: the seed's rules, end to end."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from consent_lifecycle.access import is_permitted, record_access
from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import iso, parse_iso
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.reconcile.store import list_findings
from flows.connection_expiry_scan import connection_expiry_scan
from flows.consent_reconciliation import consent_reconciliation
from tests.fixtures_sandbox import SANDBOX_NOW, sandbox_client

pytestmark = pytest.mark.prefect
CATALOG = load_catalog()
DASHBOARD = CATALOG.product("dashboard").required
FINANCIAL_STATEMENTS = {"balanceSheet", "profitAndLoss", "cashFlowStatement"}


@pytest.fixture
def world(flow_env, fresh_sandbox, sqlite_url):
    asyncio.run(connection_expiry_scan(now=SANDBOX_NOW))  # the snapshot
    return World(fresh_sandbox, make_engine(sqlite_url))


class World:
    def __init__(self, sandbox, engine):
        self.sandbox, self.engine, self.ledger = sandbox, engine, Ledger(engine, CATALOG)

    def http(self):
        return sandbox_client(self.sandbox)

    def company_with(self, *sources: str, region: str = "uk") -> tuple[str, dict[str, dict]]:
        """A company with a Linked connection of each source type (the first of each), in `region`."""
        with self.http() as http:
            companies = http.get("/companies", params={"pageSize": 100}).json()["results"]
        for company in companies:
            if company["tags"].get("region", "uk").lower() != region:
                continue
            linked = {}
            for connection in company["dataConnections"]:
                if connection["status"] == "Linked":
                    linked.setdefault(connection["sourceType"], connection)
            if all(source in linked for source in sources):
                return company["id"], linked
        pytest.fail(f"no {region} company with Linked {sources}")

    def run(self, now: datetime, **parameters):
        with self.http() as http:
            http.post("/_sandbox/clock", json={"now": iso(now)}).raise_for_status()
        return asyncio.run(consent_reconciliation(now=now, **parameters))

    def scheduled(self, company: str) -> set[str]:
        with self.http() as http:
            settings = http.get(f"/companies/{company}/syncSettings").json()["settings"]
        return {s["dataType"] for s in settings if s["fetchOnFirstLink"] or s["syncSchedule"] > 0}

    def pulls(self, company: str, since: datetime) -> list[dict]:
        with self.http() as http:
            body = http.get(
                f"/companies/{company}/data/history",
                params={"pageSize": 5000, "query": f"requested>={iso(since)}"},
            ).json()
        return body["results"]

    def findings(self, company: str, kind: str, open_only: bool = True) -> list[dict]:
        with self.engine.connect() as db:
            return list_findings(db, kind=kind, company_id=company, open_only=open_only)


def first_link(connection: dict) -> datetime:
    return parse_iso(connection["created"])


def test_dashboard_then_lending_then_revocation(world):
    company, linked = world.company_with("Accounting", "Banking")
    accounting, bank = linked["Accounting"], linked["Banking"]
    at = first_link(accounting)
    world.ledger.grant(
        company,
        "dashboard",
        connections=[accounting["id"]],
        wording_version="v1",
        actor="customer",
        channel="ui",
        at=at,
    )
    seeded = world.scheduled(company)
    assert seeded - DASHBOARD, "the seed schedules more than Dashboard reads"

    # 1. sync settings cut to Dashboard's types; what was scheduled beyond them is a finding
    t1 = SANDBOX_NOW + timedelta(hours=1)
    summary = world.run(t1, company_ids=[company])
    assert world.scheduled(company) == set(DASHBOARD)
    found = world.findings(company, "unconsented_sync_setting", open_only=False)
    assert {f["data_type"] for f in found} == seeded - DASHBOARD
    assert summary.sync_settings_set == 1
    # the cut made them untrue: resolved by the remediation, not left open until the company's next read
    assert not world.findings(company, "unconsented_sync_setting")
    assert {f["resolved_at"] for f in found} == {t1}
    unconsented = {f["data_type"] for f in world.findings(company, "unconsented_pull")}
    assert unconsented and not unconsented & set(DASHBOARD)  # history pulled types nobody consented to

    # 2. Lending granted later: financial statements are queued at the next run, no re-authorization
    t2 = t1 + timedelta(hours=1)
    world.ledger.grant(
        company,
        "lending",
        connections=[accounting["id"], bank["id"]],
        wording_version="v1",
        actor="customer",
        channel="ui",
        at=t2,
    )
    world.run(t2 + timedelta(minutes=5), company_ids=[company])
    queued = {p["dataType"] for p in world.pulls(company, t2)}
    assert {"balanceSheet", "profitAndLoss"} <= queued
    assert FINANCIAL_STATEMENTS <= world.scheduled(company)
    assert not world.findings(company, "unconsented_sync_setting")  # the cut in step 1 held

    # 3. revoked: Lending's own types leave the sync settings; pulls before the revocation are fine,
    #    a pull after it is a finding (and its data is due for deletion)
    t3 = t2 + timedelta(hours=3)
    world.ledger.revoke(company, "lending", actor="customer", channel="ui", at=t3, reason="customer asked")
    with world.http() as http:
        http.post("/_sandbox/clock", json={"now": iso(t3 + timedelta(minutes=10))}).raise_for_status()
        late = http.post(
            f"/companies/{company}/data/queue/balanceSheet", params={"connectionId": accounting["id"]}
        ).json()
    world.run(t3 + timedelta(hours=1), company_ids=[company])
    assert not world.scheduled(company) & (FINANCIAL_STATEMENTS | {"banking-transactions"})
    flagged = {f["key"].split(":", 1)[1] for f in world.findings(company, "unconsented_pull")}
    early = [
        p["id"] for p in world.pulls(company, t2) if p["dataType"] == "balanceSheet" and p["id"] != late["id"]
    ]
    assert late["id"] in flagged and early and not set(early) & flagged


def test_a_product_reading_another_products_type_is_a_finding(world):
    company, linked = world.company_with("Accounting")
    accounting = linked["Accounting"]
    at = first_link(accounting)
    for product in ("dashboard", "lending"):
        world.ledger.grant(
            company,
            product,
            connections=[accounting["id"]],
            wording_version="v1",
            actor="customer",
            channel="ui",
            at=at,
        )
    read_at = SANDBOX_NOW - timedelta(hours=2)
    assert is_permitted(world.engine, CATALOG, "lending", company, "balanceSheet", read_at)
    assert not is_permitted(world.engine, CATALOG, "dashboard", company, "balanceSheet", read_at)
    wrong = record_access(
        world.engine, CATALOG, "dashboard", company, "balanceSheet", read_at, now=SANDBOX_NOW
    )
    record_access(world.engine, CATALOG, "lending", company, "balanceSheet", read_at, now=SANDBOX_NOW)
    record_access(world.engine, CATALOG, "dashboard", company, "invoices", read_at, now=SANDBOX_NOW)

    world.run(SANDBOX_NOW, company_ids=[company])
    (finding,) = world.findings(company, "product_read_outside_consent")
    assert (finding["key"], finding["product"], finding["data_type"]) == (
        f"product_read_outside_consent:{wrong}",
        "dashboard",
        "balanceSheet",
    )


def test_an_expired_open_banking_connection_gets_nothing_queued(world):
    company, linked = world.company_with("Banking")
    bank = linked["Banking"]
    world.ledger.grant(
        company,
        "bank-feeds",
        connections=[bank["id"]],
        data_types=["banking-transactions", "banking-accounts"],
        wording_version="v1",
        actor="customer",
        channel="ui",
        at=first_link(bank),
    )
    expired = max(SANDBOX_NOW, first_link(bank) + timedelta(days=95))  # UK: 90 days after the link
    on_bank = [p["id"] for p in world.pulls(company, first_link(bank)) if p["connectionId"] == bank["id"]]
    summary = world.run(expired, company_ids=[company])
    assert [
        p["id"] for p in world.pulls(company, first_link(bank)) if p["connectionId"] == bank["id"]
    ] == on_bank
    assert summary.pulls_queued == 0
    assert not world.scheduled(company) & {"banking-transactions", "banking-accounts"}
    late = world.findings(company, "pull_on_expired_connection")
    assert all(parse_iso(f["detail"]["expired_at"]) <= expired for f in late)


def test_rerunning_the_same_window_changes_nothing(world):
    company, linked = world.company_with("Accounting")
    world.ledger.grant(
        company,
        "dashboard",
        connections=[linked["Accounting"]["id"]],
        wording_version="v1",
        actor="customer",
        channel="ui",
        at=first_link(linked["Accounting"]),
    )
    window = {"window_start": SANDBOX_NOW - timedelta(days=90), "window_end": SANDBOX_NOW - timedelta(days=1)}
    first = world.run(SANDBOX_NOW, **window)
    with world.engine.connect() as db:
        before = list_findings(db)
    second = world.run(SANDBOX_NOW, **window)
    with world.engine.connect() as db:
        assert list_findings(db) == before
    assert first.new > 0 and second.new == 0 and first.findings == second.findings
    assert first.pulls_queued == second.pulls_queued == 0  # a past window checks, it does not pull
