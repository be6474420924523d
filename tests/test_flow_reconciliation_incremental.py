"""The incremental night against the sandbox through Prefect: after a full night, the next reads only the
companies that changed, are marked or are swept, and an unchanged company costs no Codat request."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from consent_lifecycle.clock import iso, parse_iso
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.reconcile import marks
from consent_lifecycle.reconcile.select import select_companies
from consent_lifecycle.reconcile.store import selection_inputs
from flows.connection_expiry_scan import connection_expiry_scan
from flows.consent_reconciliation import consent_reconciliation
from tests.fixtures_sandbox import SANDBOX_COMPANIES, SANDBOX_NOW
from tests.test_flow_reconciliation import DASHBOARD, World

pytestmark = pytest.mark.prefect
NIGHT_1 = SANDBOX_NOW + timedelta(hours=1)
CHANGES_AT = NIGHT_1 + timedelta(hours=2)
NIGHT_2 = NIGHT_1 + timedelta(days=1)


@pytest.fixture
def world(flow_env, fresh_sandbox, sqlite_url, tmp_path):
    asyncio.run(connection_expiry_scan(now=SANDBOX_NOW))
    night = Night(fresh_sandbox, make_engine(sqlite_url))
    night.env = flow_env
    return night


class Night(World):
    def clock(self, now) -> None:
        with self.http() as http:
            http.post("/_sandbox/clock", json={"now": iso(now)}).raise_for_status()

    def companies(self) -> list[dict]:
        with self.http() as http:
            return http.get("/companies", params={"pageSize": 100}).json()["results"]

    def linked(self, source: str, exclude: set[str]) -> tuple[str, dict]:
        for company in self.companies():
            for connection in company["dataConnections"]:
                if company["id"] not in exclude and connection["sourceType"] == source and connection["status"] == "Linked":
                    return company["id"], connection
        pytest.fail(f"no Linked {source} left")

    def requests(self) -> dict:
        with self.http() as http:
            return http.get("/_sandbox/requests").json()

    def clear_requests(self) -> None:
        with self.http() as http:
            http.delete("/_sandbox/requests").raise_for_status()

    def selection(self, now):
        with self.engine.connect() as db:
            return select_companies(selection_inputs(db), now, 7, full=False)

    def marked(self) -> dict[str, list[str]]:
        with self.engine.connect() as db:
            return marks.marked(db)


def settings_reads(counts: dict) -> int:
    return sum(n for key, n in counts["counts"].items() if key.startswith("GET ") and key.endswith("/syncSettings"))


def test_after_a_full_night_the_next_reads_only_what_changed(world):
    revoked, accounting = world.linked("Accounting", set())
    world.ledger.grant(revoked, "dashboard", connections=[accounting["id"]], wording_version="v1", actor="customer",
                       channel="ui", at=parse_iso(accounting["created"]))
    # night 1, full: every company read, each with reason full, and every request counted
    world.clock(NIGHT_1)
    world.clear_requests()
    first = asyncio.run(consent_reconciliation(now=NIGHT_1, full=True))
    assert first.selection == "full" and first.reasons == {"full": SANDBOX_COMPANIES} == {"full": first.companies}
    assert first.codat_requests == world.requests()["total"] == sum(first.codat_requests_by_reason.values())
    assert world.scheduled(revoked) == set(DASHBOARD)

    # between the nights: a consent revoked, a violation marked by an event, a pull no webhook told of
    world.ledger.revoke(revoked, "dashboard", reason="customer asked", actor="customer", channel="ui", at=CHANGES_AT)
    violating, _ = world.linked("Accounting", {revoked})
    with world.engine.begin() as db:
        marks.mark(db, [(violating, "violation")], CHANGES_AT)
    rogue, bank = world.linked("Banking", {revoked, violating})
    world.clock(CHANGES_AT)
    with world.http() as http:
        http.post(f"/companies/{rogue}/data/queue/banking-accounts", params={"connectionId": bank["id"]}).raise_for_status()
    world.clock(NIGHT_2)  # the pull completes: the connection's lastSync moves, and no read.completed came
    world.clear_requests()
    scan = asyncio.run(connection_expiry_scan(now=NIGHT_2))  # the listing records lastSync in the snapshot
    assert scan.codat_requests == world.requests()["total"] > 0

    # night 2, incremental: the selection names each change with its reason
    expected = world.selection(NIGHT_2)
    reasons = expected.reason_of()
    assert reasons[revoked] == "consent_changed"
    assert reasons[violating] == "violation"
    assert reasons[rogue] == "lost_webhook"
    unchanged = SANDBOX_COMPANIES - len(reasons)
    assert unchanged > 0, reasons
    world.clear_requests()
    second = asyncio.run(consent_reconciliation(now=NIGHT_2))
    counts = world.requests()
    assert second.selection == "incremental" and second.reasons == expected.reasons
    assert second.companies == len(reasons) and second.deferred == 0
    # one sync settings read per company read: the unchanged companies cost nothing
    assert settings_reads(counts) == len(reasons) < SANDBOX_COMPANIES
    assert second.codat_requests == counts["total"] == sum(second.codat_requests_by_reason.values())
    assert set(second.codat_requests_by_reason) == set(second.reasons)
    assert second.codat_requests < first.codat_requests
    # the revocation took Dashboard's types off the company's sync settings; the violation's mark is cleared
    assert not world.scheduled(revoked) & set(DASHBOARD)
    assert violating not in world.marked()

    # a second run the same night reads nothing it has just read
    world.clear_requests()
    third = asyncio.run(consent_reconciliation(now=NIGHT_2 + timedelta(minutes=30)))
    assert not set(third.reasons) & {"consent_changed", "violation", "lost_webhook", "sweep", "never_reconciled"}
    assert third.codat_requests == world.requests()["total"]


def test_a_run_over_its_request_budget_reads_the_highest_priorities_and_defers_the_rest(world):
    world.clock(NIGHT_1)
    asyncio.run(consent_reconciliation(now=NIGHT_1, full=True))
    marked = [c["id"] for c in world.companies()[:2]]
    with world.engine.begin() as db:
        marks.mark(db, [(c, "violation") for c in marked], CHANGES_AT)
    # every company overdue a week later; 120 requests a minute for 3 seconds: 3 companies of 2 requests
    later = NIGHT_1 + timedelta(days=8)
    world.clock(later)
    world.env.setenv("CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE", "120")
    summary = asyncio.run(consent_reconciliation(now=later, budget_minutes=0.05))
    assert summary.companies == 3 and summary.reasons == {"violation": 2, "overdue": 1}
    assert summary.deferred == SANDBOX_COMPANIES - 3
    assert summary.estimated_minutes == round(SANDBOX_COMPANIES * 2 / 120, 2)
    assert set(world.marked()) & set(marked) == set()
