"""Nights driven by Codat's webhooks, end to end against the sandbox: its scheduler syncs every company on its
clock and tells each read through the real receiver into the inbox, codat-events processes them, and the
nightly scan and incremental reconciliation read only what changed. With deliveries dropped, duplicated and
reordered, `sweep_days` nights later the state equals what a full reconciliation makes of it, row for row."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from datetime import datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from codat_sandbox.runner import serving
from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import iso, parse_iso
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.models import Connection, DeletionItem, Finding
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.ledger.errors import ConsentError
from consent_lifecycle.webhook_receiver import create_receiver
from flows.codat_events import codat_events
from flows.connection_expiry_scan import connection_expiry_scan
from flows.consent_reconciliation import consent_reconciliation
from tests.fixtures_sandbox import SANDBOX_NOW, sandbox_client

pytestmark = pytest.mark.prefect
CATALOG = load_catalog()
SECRET = "whsec_" + base64.b64encode(b"codat-webhook-signing-key-nights").decode()
SWEEP_DAYS = 3
INSTALL = SANDBOX_NOW + timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture
def nights(flow_env, fresh_sandbox, sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    with serving(create_receiver(SecretStr(SECRET), engine)) as base_url:
        world = Nights(fresh_sandbox, engine, sqlite_url, flow_env)
        world.post("/_sandbox/webhooks", {"url": f"{base_url}/webhooks/codat", "secret": SECRET})
        world.post("/_sandbox/scheduler", {"enabled": True, "failure_rate": 0.05})
        yield world
    engine.dispose()


class Nights:
    def __init__(self, sandbox, engine, url, env):
        self.sandbox, self.engine, self.url, self.env = sandbox, engine, url, env
        self.ledger = Ledger(engine, CATALOG)
        self.now = SANDBOX_NOW

    def post(self, path: str, body: dict) -> dict:
        with sandbox_client(self.sandbox, timeout=120) as http:
            response = http.post(path, json=body)
            assert response.status_code < 300, f"POST {path}: {response.status_code} {response.text}"
            return response.json() if response.content else {}

    def get(self, path: str, **params) -> dict:
        with sandbox_client(self.sandbox) as http:
            response = http.get(path, params=params)
            response.raise_for_status()
            return response.json()

    def companies(self) -> list[dict]:
        return self.get("/companies", pageSize=100)["results"]

    def install(self) -> None:
        """The first night: the snapshot, every company's consents to the products Codat lists for it, a full
        reconciliation that sets every company's sync settings to exactly what it consented to."""
        asyncio.run(connection_expiry_scan(now=SANDBOX_NOW))
        for company in self.companies():
            for product in company.get("products") or []:
                if product in CATALOG.products:
                    try:
                        self.ledger.grant(company["id"], product, wording_version="v1", actor="customer",
                                          channel="ui", at=parse_iso(company["created"]))
                    except ConsentError:  # no Linked connection the product reads
                        pass
        self.clock(INSTALL)
        assert asyncio.run(consent_reconciliation(now=INSTALL, full=True)).selection == "full"
        self.now = INSTALL

    def clock(self, now: datetime) -> None:
        self.post("/_sandbox/clock", {"now": iso(now)})

    def night(self, **reconcile):
        """A day on: the day's syncs run and are told (through the delivery faults), codat-events drains the
        inbox, then the nightly scan and reconciliation (incremental, `SWEEP_DAYS`)."""
        self.now += DAY
        self.clock(self.now)
        self.post("/_sandbox/webhooks/drain", {"timeout": 60})
        events = asyncio.run(codat_events(now=self.now))
        assert events.retried == events.failed == 0, events.errors
        scan = asyncio.run(connection_expiry_scan(now=self.now))
        parameters = {"sweep_days": SWEEP_DAYS} | reconcile
        return events, scan, asyncio.run(consent_reconciliation(now=self.now, **parameters))

    def portal_edit(self, company: str, data_type: str, schedule: int) -> None:
        """Switch `data_type` on in `company`'s sync settings as a Portal user would: Codat sends no event."""
        settings = self.get(f"/companies/{company}/syncSettings")["settings"]
        settings.append({"dataType": data_type, "fetchOnFirstLink": True, "syncSchedule": schedule, "syncOrder": 0})
        self.post(f"/_sandbox/companies/{company}/syncSettings",
                  {"companyId": company, "settings": settings, "overridesDefaults": True})

    def settings(self) -> dict[str, list[tuple]]:
        """Every company's sync settings at the sandbox, as comparable rows."""
        return {
            c["id"]: sorted((s["dataType"], s["fetchOnFirstLink"], s["syncSchedule"])
                            for s in self.get(f"/companies/{c['id']}/syncSettings")["settings"])
            for c in self.companies()
        }

    def enabled(self, company: str) -> set[str]:
        settings = self.get(f"/companies/{company}/syncSettings")["settings"]
        return {s["dataType"] for s in settings if s["fetchOnFirstLink"] or s["syncSchedule"] > 0}

    def entitled(self, company: str) -> set[str]:
        return set(self.ledger.entitlements(company, now=self.now)["data_type"])


def state_rows(url: str) -> tuple[list[tuple], list[tuple]]:
    """Findings (open or resolved) and deletion items, without the times and counters a later run bumps."""
    engine = make_engine(url)
    try:
        with engine.connect() as db:
            findings = db.execute(
                select(Finding.key, Finding.kind, Finding.company_id, Finding.connection_id, Finding.data_type,
                       Finding.product, Finding.resolved_at.is_(None)).order_by(Finding.key)
            ).all()
            items = db.execute(
                select(DeletionItem.key, DeletionItem.company_id, DeletionItem.connection_id,
                       DeletionItem.data_type, DeletionItem.scope, DeletionItem.status, DeletionItem.due_at)
                .order_by(DeletionItem.key)
            ).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in findings], [tuple(r) for r in items]


def copy_database(url: str, target) -> str:
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    copy = sqlite3.connect(target)
    with copy:
        source.backup(copy)
    source.close()
    copy.close()
    return f"sqlite:///{target}"


def unconsented(world: Nights, company: dict, source: str) -> tuple[str, str] | None:
    """A Linked connection of `source` of `company`, and a data type of that source no consent covers."""
    entitled = world.entitled(company["id"])
    for connection in company["dataConnections"]:
        if connection["status"] == "Linked" and connection["sourceType"] == source:
            for data_type in sorted(t for t, s in DATA_TYPE_SOURCE.items() if s == source):
                if data_type not in entitled:
                    return connection["id"], data_type
    return None


def test_with_lost_duplicated_and_reordered_webhooks_the_nights_equal_a_full_reconciliation(nights, tmp_path):
    nights.install()
    nights.post("/_sandbox/faults", {"webhook_drop": 0.2, "webhook_duplicate": 0.1, "webhook_reorder": 0.7,
                                     "seed": 11})
    companies = nights.companies()
    reasons: dict[str, int] = {}
    events_seen = 0
    # two nights of changes no consent allows, some told by a webhook (which may be lost) and some never told
    for day in range(2):
        for company in companies[day::4]:
            if (rogue := unconsented(nights, company, "Accounting")) is not None:  # a rogue product's pull
                connection, data_type = rogue
                nights.post(f"/_sandbox/companies/{company['id']}/pulls",
                            {"dataType": data_type, "connectionId": connection})
        for company in companies[2 + day::6]:  # a Portal edit: an unconsented type switched on, no event
            if (edit := unconsented(nights, company, "Banking")) is not None:
                nights.portal_edit(company["id"], edit[1], schedule=0)
        events, _, reconciled = nights.night()
        events_seen += events.events
        for reason, count in reconciled.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    # then the quiet nights of one sweep: syncs and their webhooks (still faulty) go on
    for _ in range(SWEEP_DAYS):
        events, _, reconciled = nights.night()
        events_seen += events.events
        assert reconciled.deferred == 0
        for reason, count in reconciled.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    assert events_seen > len(companies)  # the syncs were told, through the faults
    assert reasons.get("lost_webhook", 0) > 0 and reasons.get("sweep", 0) > 0, reasons
    assert sum(reasons.values()) < len(companies) * (2 + SWEEP_DAYS)  # not every company every night

    # the same state, reconciled in full on a copy: nothing to add, resolve, open or set
    incremental = state_rows(nights.url)
    settings = nights.settings()
    assert any(kind == "unconsented_pull" for _, kind, *_ in incremental[0])
    copy = copy_database(nights.url, tmp_path / "full.db")
    nights.env.setenv("CONSENT_DATABASE_URL", copy)
    full = asyncio.run(consent_reconciliation(now=nights.now, full=True))
    after = state_rows(copy)
    assert [r for r in after[0] if r not in incremental[0]] == [r for r in incremental[0] if r not in after[0]]
    assert after == incremental
    assert (full.new, full.resolved, full.deletion_items_opened) == (0, 0, 0)
    assert (full.sync_settings_set, full.pulls_queued) == (0, 0)
    assert nights.settings() == settings
    for company in companies:  # and what Codat pulls is what each company consented to
        assert nights.enabled(company["id"]) <= nights.entitled(company["id"]), company["id"]


def test_an_unconsented_pull_is_corrected_from_its_webhook_alone(nights):
    nights.install()
    company = next(c for c in nights.companies() if unconsented(nights, c, "Accounting"))
    _, data_type = unconsented(nights, company, "Accounting")
    # a Portal edit switches the type on (no event), and the day's sync pulls it: read.completed tells
    nights.portal_edit(company["id"], data_type, schedule=24)
    nights.now += DAY
    nights.clock(nights.now)
    nights.post("/_sandbox/webhooks/drain", {"timeout": 60})
    events = asyncio.run(codat_events(now=nights.now))  # no nightly run
    assert company["id"] in events.reconciled_at_once and events.violations >= 1
    assert data_type not in nights.enabled(company["id"])
    with nights.engine.connect() as db:
        findings = db.execute(select(Finding.kind).where(Finding.company_id == company["id"],
                                                         Finding.data_type == data_type)).scalars().all()
        items = db.execute(select(DeletionItem.scope).where(DeletionItem.company_id == company["id"],
                                                            DeletionItem.data_type == data_type)).scalars().all()
    assert "unconsented_pull" in findings and items


def test_an_out_of_band_settings_edit_is_caught_within_sweep_days(nights):
    nights.install()
    nights.post("/_sandbox/scheduler", {"enabled": False})  # no sync, so no event can tell
    company = next(c for c in nights.companies() if unconsented(nights, c, "Accounting"))
    _, data_type = unconsented(nights, company, "Accounting")
    nights.portal_edit(company["id"], data_type, schedule=0)
    caught = None
    for night in range(1, SWEEP_DAYS + 1):
        _, _, reconciled = nights.night()
        if data_type not in nights.enabled(company["id"]):
            caught = night
            assert reconciled.reasons.get("sweep", 0) >= 1
            break
    assert caught is not None and caught <= SWEEP_DAYS


def test_a_reauthorization_between_two_scans_restarts_the_expiry(nights):
    nights.install()
    company, bank = next(
        (c["id"], n) for c in nights.companies() for n in c["dataConnections"]
        if n["sourceType"] == "Banking" and n["status"] == "Linked"
        and n["id"] in set(nights.ledger.entitlements(c["id"], now=INSTALL)["connection_id"])
    )
    with nights.engine.connect() as db:
        before = db.scalar(select(Connection.last_authorized_at).where(Connection.id == bank["id"]))
    # between two scans the customer's bank consent lapses and is given again: the scans see Linked both times
    deauthorized, reconnected = INSTALL + timedelta(hours=2), INSTALL + timedelta(hours=3)
    nights.clock(deauthorized)
    nights.post(f"/_sandbox/connections/{bank['id']}/deauthorize", {})
    nights.clock(reconnected)
    nights.post(f"/_sandbox/connections/{bank['id']}/reconnect", {})
    nights.post("/_sandbox/webhooks/drain", {"timeout": 60})
    later = reconnected + timedelta(hours=1)
    asyncio.run(codat_events(now=later))
    asyncio.run(connection_expiry_scan(now=later))  # an older scan's view never overwrites the event's time
    with nights.engine.connect() as db:
        status, authorized = db.execute(
            select(Connection.status, Connection.last_authorized_at).where(Connection.id == bank["id"])
        ).one()
    assert before is not None and before < reconnected
    assert (status, authorized) == ("Linked", reconnected)
    assert bank["id"] in set(nights.ledger.entitlements(company, now=later)["connection_id"])


def test_with_the_prefect_api_down_the_served_receiver_stores_every_delivery_for_a_later_run(nights, tmp_path):
    """`consent webhooks serve` whose Prefect API refuses connections (its nudge fails): each delivery is still
    stored and answered, and the next codat-events run (here, once Prefect is back) processes it."""
    import socket
    import subprocess
    import time

    import httpx

    from tests.fixtures_crash import CONSENT, cli_env, kill
    from tests.test_webhook_receiver import deliver

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = cli_env(PREFECT_API_URL="http://127.0.0.1:9/api", CONSENT_CODAT_WEBHOOK_SECRET=SECRET)
    process = subprocess.Popen([CONSENT, "webhooks", "serve", "--port", str(port),
                                "--alerts-file", str(tmp_path / "alerts.jsonl")],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/webhooks/codat"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/alerts", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and process.poll() is None, "the receiver did not start"
                time.sleep(0.2)
        nights.install()
        company = next(c for c in nights.companies() if unconsented(nights, c, "Accounting"))
        connection, data_type = unconsented(nights, company, "Accounting")
        body = {"id": "evt-down", "eventType": "read.completed", "generatedDate": iso(INSTALL),
                "payload": {"referenceCompany": {"id": company["id"]},
                            "dataTypes": [{"connectionId": connection, "dataType": data_type,
                                           "recordsModified": 2, "status": "Complete"}]}}
        answers = [deliver(url, body, secret=SECRET, webhook_id=f"down-{n}") for n in range(3)]
        time.sleep(1.5)  # the failed nudges have fired: the receiver still answers and stays up
        answers.append(deliver(url, body, secret=SECRET, webhook_id="down-0"))  # Codat's retry of the first
    finally:
        kill(process)
    assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "stored")] * 3 + [(200, "duplicate")]
    events = asyncio.run(codat_events(now=INSTALL + timedelta(minutes=5)))
    assert events.events == 3 and company["id"] in events.reconciled_at_once
