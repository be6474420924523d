"""The six scenarios of the seed (../shared/seed/customer-lifecycle.md), end to end: the `consent` command as
its console script runs it (in this process: tests/fixtures_cli.py; in a subprocess where the process
matters, a stdin that is not a terminal), against the sandbox over HTTP and a real database, asserting on
its `--json` output.

The snapshot is filled with `consent sync` (a Prefect flow run on the session's test server) once per module,
from the freshly reset sandbox, into a template database each test gets its own copy of (a sync is the slowest
command here); each test then picks a sandbox company whose connections fit its scenario and acts as the
customer would.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import parse_iso
from consent_lifecycle.db.migrate import upgrade
from tests.fixtures_cli import consent as consent_in_process
from tests.fixtures_sandbox import SANDBOX_API_KEY, SANDBOX_NOW_ISO, reset_sandbox, sandbox_client

pytestmark = pytest.mark.prefect

CONSENT = str(Path(sys.executable).parent / "consent")
CATALOG = load_catalog()
DASHBOARD = set(CATALOG.product("dashboard").required)
LENDING = set(CATALOG.product("lending").required)
FINANCIAL_STATEMENTS = {"balanceSheet", "profitAndLoss", "cashFlowStatement"}
BANKING = {"banking-accounts", "banking-transactions"}
#: the customer's moments, after the sync at SANDBOX_NOW (2026-11-01T12:00Z)
T1, T2, T3 = "2026-11-01T12:10:00Z", "2026-11-02T09:00:00Z", "2026-11-03T10:00:00Z"
#: `show` decides as of this moment unless a test says otherwise: after every event above, and fixed, so
#: which connections have expired (90 days after their authorization, UK) never depends on today's date
SHOWN_AT = "2026-11-04T00:00:00Z"
#: a bank linked longer ago than this at SANDBOX_NOW would be expired or warned about by then
FRESH_BANK = datetime(2026, 11, 1, 12, tzinfo=UTC) - timedelta(days=80)


class Cli:
    """`consent` as a user runs it, with the test's database, sandbox and Prefect server."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return consent_in_process(args, self.env, self.cwd)  # stdin: never a terminal

    def process(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The installed `consent` script in a subprocess."""
        return subprocess.run(
            [CONSENT, *args], env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,  # never a terminal
            capture_output=True, text=True, timeout=120, check=False,
        )

    def __call__(self, *args: str) -> Any:
        """Run with `--json`; exit 0 expected; the parsed output."""
        if args[0] == "show" and "--as-of" not in args:
            args = (*args, "--as-of", SHOWN_AT)
        result = self.run(*args, "--json")
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return json.loads(result.stdout)


def _environment(sandbox, database_url: str) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": database_url,
        "CONSENT_CODAT_BASE_URL": sandbox.base_url,
        "CONSENT_CODAT_API_KEY": SANDBOX_API_KEY,
        "PREFECT_API_URL": PREFECT_API_URL.value(),  # the session's test server, not one per subprocess
    }
    env.pop("CONSENT_CATALOG", None)
    return env


def _file(url: str) -> str:
    return make_url(url).database


@pytest.fixture(scope="module")
def synced(sandbox, prefect_harness, tmp_path_factory) -> str:
    """A database filled by `consent sync` from the seeded sandbox at SANDBOX_NOW: the template of each test."""
    directory = tmp_path_factory.mktemp("synced")
    url = f"sqlite:///{directory / 'template.db'}"
    upgrade(url)
    reset_sandbox(sandbox)
    summary = Cli(_environment(sandbox, url), directory)("sync", "--now", SANDBOX_NOW_ISO)
    assert sum(row["connections"] for row in summary) > 20
    return url


@pytest.fixture
def consent(synced, fresh_sandbox, sqlite_url, tmp_path) -> Cli:
    """`consent` on this test's own copy of the synced database, the sandbox reset to the same seeded world."""
    with sqlite3.connect(_file(synced)) as source, sqlite3.connect(_file(sqlite_url)) as target:
        source.backup(target)
    return Cli(_environment(fresh_sandbox, sqlite_url), tmp_path)


def pick(sandbox, fits: Callable[[dict[str, list[str]]], bool]) -> tuple[str, dict[str, list[str]]]:
    """The first sandbox company whose Linked connections by source type `fits` (banks linked recently
    enough not to expire during the scenario, so none is left out); (company id, those)."""
    with sandbox_client(sandbox) as http:
        companies = http.get("/companies", params={"pageSize": 100}).json()["results"]
    for company in companies:
        linked: dict[str, list[str]] = {}
        for connection in company["dataConnections"]:
            if connection["status"] == "Linked":
                linked.setdefault(connection["sourceType"], []).append(connection["id"])
        banks = [c for c in company["dataConnections"] if c["status"] == "Linked" and c["sourceType"] == "Banking"]
        if all(parse_iso(bank["created"]) >= FRESH_BANK for bank in banks) and fits(linked):
            return company["id"], linked
    pytest.fail("no sandbox company fits the scenario")


def one_accounting(banks: int) -> Callable[[dict[str, list[str]]], bool]:
    return lambda linked: len(linked.get("Accounting", [])) == 1 and len(linked.get("Banking", [])) >= banks


def entitled(shown: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {(e["connection_id"], e["data_type"]): e["products"] for e in shown["entitlements"]}


def consent_of(shown: dict[str, Any], product: str) -> dict[str, Any]:
    (found,) = [c for c in shown["consents"] if c["product"] == product]
    return found


def test_1_onboarding_a_new_customer(consent, fresh_sandbox):
    company, linked = pick(fresh_sandbox, one_accounting(banks=1))
    (accounting,) = linked["Accounting"]

    granted = consent("grant", company, "dashboard", "--at", T1)
    assert granted["status"] == "active" and granted["connections"] == [accounting]

    shown = consent("show", company)
    assert shown["company_id"] == company
    dashboard = consent_of(shown, "dashboard")
    assert dashboard["status"] == "active" and set(dashboard["data_types"]) == DASHBOARD
    assert dashboard["granted_at"] == T1 and dashboard["revoked_at"] is None
    # only the accounting connection carries the dashboard's data: the Linked bank gets nothing pulled
    assert dashboard["connections"] == [accounting]
    assert entitled(shown) == {(accounting, t): ["dashboard"] for t in DASHBOARD}


def test_2_existing_customer_onto_a_new_product_without_reauthorizing(consent, fresh_sandbox):
    company, linked = pick(fresh_sandbox, one_accounting(banks=0))
    (accounting,) = linked["Accounting"]
    assert consent("grant", company, "dashboard", "--at", T1)["connections"] == [accounting]

    # "Confirm I'm happy to share additional data": the same connection, no new link, no sync in between
    consent("grant", company, "lending", "--connection", accounting, "--channel", "ui", "--at", T2)
    shown = consent("show", company)
    assert consent_of(shown, "lending")["connections"] == consent_of(shown, "dashboard")["connections"] == [accounting]
    after = entitled(shown)
    assert {connection for connection, _ in after} == {accounting}
    for statement in FINANCIAL_STATEMENTS:
        assert after[(accounting, statement)] == ["lending"]
    for shared in DASHBOARD & LENDING:
        assert after[(accounting, shared)] == ["dashboard", "lending"]
    assert set(after) == {(accounting, t) for t in DASHBOARD | (LENDING - BANKING)}


def test_3_adding_an_integration_package_to_an_existing_product(consent, fresh_sandbox):
    company, linked = pick(fresh_sandbox, one_accounting(banks=2))
    (accounting,), (bank, another_bank) = linked["Accounting"], linked["Banking"][:2]
    granted = consent("grant", company, "lending", "--connection", accounting, "--connection", bank, "--at", T1)
    assert sorted(granted["connections"]) == sorted([accounting, bank])  # the other Linked bank is not shared

    extended = consent("extend", company, "lending", "--connection", another_bank, "--channel", "ui", "--at", T2)
    assert sorted(extended["connections"]) == sorted([accounting, bank, another_bank])
    after = entitled(consent("show", company))
    for data_type in BANKING:
        assert after[(another_bank, data_type)] == after[(bank, data_type)] == ["lending"]
    last = consent("history", company)[-1]
    assert (last["event_type"], last["connection_ids"], last["channel"]) == ("extended", [another_bank], "ui")


def test_4_additional_data_for_a_product_already_connected_is_stored_and_revocable(consent, fresh_sandbox):
    company, linked = pick(fresh_sandbox, one_accounting(banks=0))
    (accounting,) = linked["Accounting"]
    consent("grant", company, "dashboard", "--at", T1)

    extra = ["payments", "creditNotes"]
    consent(
        "extend", company, "dashboard", "--data-type", extra[0], "--data-type", extra[1],
        "--wording-version", "dashboard-more-data-2026-10", "--actor", "ui:customer-17", "--channel", "ui",
        "--at", T2,
    )
    shown = consent("show", company)
    assert set(consent_of(shown, "dashboard")["data_types"]) == DASHBOARD | set(extra)
    assert all(entitled(shown)[(accounting, t)] == ["dashboard"] for t in extra)
    events = consent("history", company)
    assert [e["event_type"] for e in events] == ["granted", "extended"]
    stored = events[-1]
    assert set(extra) <= set(stored["data_types"]) and not DASHBOARD & set(stored["data_types"])
    assert (stored["wording_version"], stored["actor"], stored["channel"], stored["at"]) == (
        "dashboard-more-data-2026-10", "ui:customer-17", "ui", T2
    )

    impact = consent("revoke", company, "dashboard", "--yes", "--reason", "no longer needed", "--at", T3)
    deleted = {(r["connection_id"], r["data_type"]): r["due_at"] for r in impact["delete"]}
    assert deleted == {(accounting, t): "2026-11-10T10:00:00Z" for t in DASHBOARD | set(extra)}  # + 7 days
    shown = consent("show", company)
    assert consent_of(shown, "dashboard")["status"] == "revoked" and shown["entitlements"] == []


def test_5_revoking_one_use_case_shows_the_impact_and_keeps_shared_data(consent, fresh_sandbox):
    company, linked = pick(fresh_sandbox, one_accounting(banks=1))
    (accounting,) = linked["Accounting"]
    consent("grant", company, "dashboard", "--at", T1)
    lending = consent("grant", company, "lending", "--at", T2)  # default: the Linked accounting and bank(s)
    banks = set(lending["connections"]) - {accounting}
    assert banks == set(linked["Banking"])

    preview = consent("impact", company, "lending", "--at", T3)
    assert (preview["company_id"], preview["product"]) == (company, "lending")
    due = "2026-12-03T10:00:00Z"  # lending's retention: 30 days
    expected_delete = {(accounting, t): due for t in FINANCIAL_STATEMENTS} | {
        (bank, t): due for bank in banks for t in BANKING
    }
    assert {(r["connection_id"], r["data_type"]): r["due_at"] for r in preview["delete"]} == expected_delete
    kept = {(r["connection_id"], r["data_type"]): r["needed_by"] for r in preview["keep"]}
    assert kept == {(accounting, t): ["dashboard"] for t in DASHBOARD & LENDING}
    assert set(preview["connections_losing_all_consent"]) == banks

    # without --yes, on a stdin that is not a terminal: refused, the impact shown, nothing written
    events = len(consent("history", company))
    refused = consent.process("revoke", company, "lending", "--at", T3)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert "balanceSheet" in refused.stdout  # the impact came first
    assert len(consent("history", company)) == events

    done = consent("revoke", company, "lending", "--yes", "--at", T3)
    assert done == preview
    shown = consent("show", company)
    assert consent_of(shown, "lending")["status"] == "revoked"
    assert consent_of(shown, "lending")["revoked_at"] == T3
    assert consent_of(shown, "dashboard")["status"] == "active"
    assert entitled(shown) == {(accounting, t): ["dashboard"] for t in DASHBOARD}


def test_6_an_expired_open_banking_connection_loses_its_entitlements(consent, fresh_sandbox):
    company, linked = pick(fresh_sandbox, lambda c: len(c.get("Accounting", [])) == 1 and len(c.get("Banking", [])) == 1)
    (accounting,), (bank,) = linked["Accounting"], linked["Banking"]
    consent("grant", company, "lending", "--at", T1)
    before = entitled(consent("show", company))
    assert before[(bank, "banking-transactions")] == ["lending"]

    with sandbox_client(fresh_sandbox) as admin:
        admin.post(f"/_sandbox/connections/{bank}/deauthorize").raise_for_status()
    consent("sync", "--now", "2026-11-02T12:00:00Z")

    shown = consent("show", company)
    lending = consent_of(shown, "lending")
    assert lending["status"] == "active" and bank in lending["connections"]  # the consent itself stands
    after = entitled(shown)
    assert not any(connection == bank for connection, _ in after)  # nothing may be pulled from it
    assert after == {key: products for key, products in before.items() if key[0] == accounting}
