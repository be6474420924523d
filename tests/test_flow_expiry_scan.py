"""connection-expiry-scan through Prefect, against the sandbox, delivering to a real webhook receiver."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import parse_iso
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.notify.outbox import list_notifications
from flows.connection_expiry_scan import connection_expiry_scan
from tests.fixtures_sandbox import SANDBOX_API_KEY, SANDBOX_NOW, sandbox_client
from tests.fixtures_webhook import WEBHOOK_SECRET

pytestmark = pytest.mark.prefect


@pytest.fixture
def configured(fresh_sandbox, sqlite_url, prefect_harness, webhook, monkeypatch):
    monkeypatch.setenv("CONSENT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CONSENT_CODAT_BASE_URL", fresh_sandbox.base_url)
    monkeypatch.setenv("CONSENT_CODAT_API_KEY", SANDBOX_API_KEY)
    monkeypatch.setenv("CONSENT_NOTIFY_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("CONSENT_NOTIFY_WEBHOOK_SECRET", WEBHOOK_SECRET)
    return make_engine(sqlite_url)


def a_linked_bank(sandbox) -> tuple[str, str, str]:
    """(company id, connection id, created) of a Linked banking connection of a UK company."""
    with sandbox_client(sandbox) as http:
        companies = http.get("/companies", params={"pageSize": 100}).json()["results"]
    for company in companies:
        if company["tags"].get("region", "uk").lower() != "uk":
            continue
        for connection in company["dataConnections"]:
            if connection["sourceType"] == "Banking" and connection["status"] == "Linked":
                return company["id"], connection["id"], connection["created"]
    pytest.fail("no Linked UK bank in the sandbox")


def scan(**parameters):
    return asyncio.run(connection_expiry_scan(**parameters))


def notices_for(engine, connection_id: str) -> list[dict]:
    return [n for n in list_notifications(engine) if n["connection_id"] == connection_id]


def test_warns_7_then_1_day_ahead_then_expires_each_notice_once(configured, fresh_sandbox, webhook):
    company, bank, created = a_linked_bank(fresh_sandbox)
    linked = parse_iso(created)
    first = scan(company_ids=[company], now=linked + timedelta(days=84))
    assert first["notifications_queued"] >= 1
    scan(company_ids=[company], now=linked + timedelta(days=84, hours=6))  # a rerun: nothing new
    (warning,) = notices_for(configured, bank)
    assert (warning["kind"], warning["threshold_days"], warning["status"]) == ("expiry_warning", 7, "sent")
    assert warning["link"].endswith(f"/connections/{bank}/start")

    scan(company_ids=[company], now=linked + timedelta(days=89, hours=1))
    scan(company_ids=[company], now=linked + timedelta(days=91))
    kinds = sorted(((n["kind"], n["threshold_days"]) for n in notices_for(configured, bank)), key=str)
    assert kinds == [("expired", None), ("expiry_warning", 1), ("expiry_warning", 7)]
    sent = Counter(r["key"] for r in webhook.received)
    assert all(r["signed"] for r in webhook.received)
    assert all(count == 1 for count in sent.values()) and len([k for k in sent if bank in k]) == 3

    ledger = Ledger(configured, load_catalog())
    before = ledger.entitlements(company, now=linked + timedelta(days=80))
    after = ledger.entitlements(company, now=linked + timedelta(days=91))
    assert bank not in set(after["connection_id"]) and len(before) >= len(after)


def test_dry_run_writes_and_sends_nothing_and_flags_stale_accounting(configured, webhook):
    summary = scan(dry_run=True, now=SANDBOX_NOW)
    assert summary["dry_run"] and summary["classes"]["stale"] >= 1
    assert list_notifications(configured) == [] and webhook.received == []
    assert summary["notifications_planned"] >= 1
