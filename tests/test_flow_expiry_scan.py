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
    assert first.notifications_queued >= 1
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
    assert summary.dry_run and summary.classes["stale"] >= 1
    assert list_notifications(configured) == [] and webhook.received == []
    assert summary.notifications_planned >= 1


def test_a_reconfirmation_at_day_80_moves_expiry_to_day_170_and_nothing_is_sent_before(configured, fresh_sandbox):
    company, bank, created = a_linked_bank(fresh_sandbox)
    linked = parse_iso(created)
    scan(company_ids=[company], now=linked + timedelta(days=1))  # the snapshot knows the company
    ledger = Ledger(configured, load_catalog())
    ledger.grant(
        company, "lending", connections=[bank], wording_version="v1", actor="customer", channel="ui",
        at=linked + timedelta(days=1),
    )
    ledger.reconfirm(company, "lending", actor="customer", channel="ui", at=linked + timedelta(days=80))

    for day in (84, 89, 91, 120):  # all inside the old warnings or past the old expiry
        scan(company_ids=[company], now=linked + timedelta(days=day))
    assert notices_for(configured, bank) == []
    assert bank in set(ledger.entitlements(company, now=linked + timedelta(days=120))["connection_id"])

    scan(company_ids=[company], now=linked + timedelta(days=164))
    (warning,) = notices_for(configured, bank)
    assert (warning["kind"], warning["threshold_days"]) == ("expiry_warning", 7)
    assert parse_iso(warning["expires_at"]) == linked + timedelta(days=170)


def snapshot_rows(engine) -> list[dict]:
    from sqlalchemy import select

    from consent_lifecycle.db.models import Company, Connection

    with engine.connect() as db:
        companies = db.execute(select(Company.__table__).order_by(Company.id)).mappings().all()
        connections = db.execute(select(Connection.__table__).order_by(Connection.id)).mappings().all()
    return [dict(row) for row in (*companies, *connections)]


def test_with_429s_and_5xx_the_scan_ends_as_without_faults(
    configured, fresh_sandbox, tmp_path, monkeypatch, webhook
):
    """The faults of tests/test_flow_faults.py (5xx, 429 with Retry-After, requests hanging past the client's
    timeout, latency): the snapshot, the outbox and what the webhook received equal the fault-free run's."""
    from consent_lifecycle.db.migrate import upgrade
    from tests.fixtures_crash import rows
    from tests.test_flow_faults import assert_every_fault_met, inject_faults

    def outcome(engine) -> tuple[list[dict], list[dict]]:
        # the outbox row for row: id is insertion order, claimed_by the worker (host, process id) that sent it
        return snapshot_rows(engine), rows(engine, "notifications", ["key"], exclude=["id", "claimed_by"])

    now = SANDBOX_NOW + timedelta(days=60)  # some connections expiring, expired and stale
    scan(now=now, page_size=2, pages_per_task=2)  # 20 companies: 10 pages, 5 fetch tasks
    clean = outcome(configured)
    assert clean[1], "the fault-free run notified no one: nothing to compare"
    assert all(n["status"] == "sent" and n["attempts"] == 1 for n in clean[1])
    clean_received = sorted(webhook.received, key=lambda r: r["key"])
    webhook.received.clear()

    faulted_url = f"sqlite:///{tmp_path / 'faulted.db'}"
    monkeypatch.setenv("CONSENT_DATABASE_URL", faulted_url)
    upgrade(faulted_url)
    inject_faults(fresh_sandbox, monkeypatch)
    scan(now=now, page_size=2, pages_per_task=2)
    assert_every_fault_met(fresh_sandbox)

    assert outcome(make_engine(faulted_url)) == clean
    assert sorted(webhook.received, key=lambda r: r["key"]) == clean_received  # each notice once, same body


def test_killed_between_send_and_mark_the_next_run_resends_with_the_same_key_only(
    configured, fresh_sandbox, webhook, sqlite_url
):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from prefect.settings import PREFECT_API_URL

    company, bank, created = a_linked_bank(fresh_sandbox)
    at = parse_iso(created) + timedelta(days=84)
    env = {
        **os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "CONSENT_DATABASE_URL": sqlite_url,
        "CONSENT_CODAT_BASE_URL": fresh_sandbox.base_url, "CONSENT_CODAT_API_KEY": SANDBOX_API_KEY,
        "CONSENT_NOTIFY_WEBHOOK_URL": webhook.url, "CONSENT_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    consent = str(Path(sys.executable).with_name("consent"))

    def run(now, *, kill_on_first_send: bool) -> int:
        command = [consent, "run", "expiry-scan", "--company", company, "--now", now.isoformat()]
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        # the receiver got the notice (sent) and the sender dies before it hears back (not marked)
        webhook.on_receive = (lambda _: os.kill(process.pid, signal.SIGKILL)) if kill_on_first_send else None
        return process.wait(timeout=180)

    assert run(at, kill_on_first_send=True) == -signal.SIGKILL
    assert len(webhook.received) == 1
    (claimed,) = notices_for(configured, bank)
    assert claimed["status"] == "sending"

    assert run(at, kill_on_first_send=False) == 0  # same moment: the claim's lease holds, nothing resent
    assert len(webhook.received) == 1
    assert run(at + timedelta(minutes=10), kill_on_first_send=False) == 0  # lease over: resent, same key
    keys = [r["key"] for r in webhook.received]
    assert keys == [claimed["key"], claimed["key"]]
    assert [n["status"] for n in notices_for(configured, bank)] == ["sent"]
    assert all(r["body"] == webhook.received[0]["body"] for r in webhook.received)
