"""codat-events against the sandbox: deliveries go through the real receiver into the inbox, the flow
processes them (violations reconciled at once, consented reads free of Codat requests, connection state
never overwritten by an older event), and a failed or killed run loses no event and applies none twice."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from codat_sandbox.runner import serving
from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import iso, parse_iso
from consent_lifecycle.db.bulk import insert_new
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.models import CodatEvent, Connection, DeletionItem, ReadObservation
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.reconcile.store import list_findings
from consent_lifecycle.webhook_receiver import create_receiver
from flows.codat_events import codat_events
from flows.connection_expiry_scan import connection_expiry_scan
from tests.fixtures_crash import (
    CONSENT,
    clear_requests,
    cli_env,
    kill_when,
    requests_total,
    run_to_end,
    start,
)
from tests.fixtures_sandbox import SANDBOX_NOW, sandbox_client
from tests.test_webhook_receiver import deliver

pytestmark = pytest.mark.prefect
CATALOG = load_catalog()
DASHBOARD = set(CATALOG.product("dashboard").required)
SECRET = "whsec_" + base64.b64encode(b"codat-webhook-signing-key-for-tests").decode()
AT = SANDBOX_NOW + timedelta(hours=1)


@pytest.fixture
def world(flow_env, fresh_sandbox, sqlite_url):
    from pydantic import SecretStr

    asyncio.run(connection_expiry_scan(now=SANDBOX_NOW))
    engine = make_engine(sqlite_url)
    with serving(create_receiver(SecretStr(SECRET), engine)) as base_url:
        yield World(fresh_sandbox, engine, f"{base_url}/webhooks/codat")
    engine.dispose()


class World:
    def __init__(self, sandbox, engine, url):
        self.sandbox, self.engine, self.url = sandbox, engine, url
        self.ledger = Ledger(engine, CATALOG)

    def http(self):
        return sandbox_client(self.sandbox)

    def company_with(self, source: str) -> tuple[str, dict]:
        with self.http() as http:
            companies = http.get("/companies", params={"pageSize": 100}).json()["results"]
        for company in companies:
            for connection in company["dataConnections"]:
                if connection["sourceType"] == source and connection["status"] == "Linked":
                    return company["id"], connection
        pytest.fail(f"no Linked {source}")

    def send(self, event_type: str, company: str, payload: dict, generated: datetime, webhook_id: str | None = None):
        body = {"id": str(uuid.uuid4()), "eventType": event_type, "generatedDate": iso(generated),
                "payload": {"referenceCompany": {"id": company, "name": "x"}, **payload}}
        response = deliver(self.url, body, webhook_id=webhook_id or str(uuid.uuid4()))
        assert response.status_code == 200, response.text
        return response.json()["status"]

    def read(self, company: str, connection: str, data_type: str, generated: datetime, status: str = "Complete",
             webhook_id: str | None = None):
        entry = {"connectionId": connection, "dataType": data_type, "recordsModified": 3, "status": status}
        return self.send("read.completed", company, {"dataTypes": [entry]}, generated, webhook_id)

    def run(self, now: datetime):
        with self.http() as http:
            http.post("/_sandbox/clock", json={"now": iso(now)}).raise_for_status()
        return asyncio.run(codat_events(now=now))

    def scheduled(self, company: str) -> set[str]:
        with self.http() as http:
            settings = http.get(f"/companies/{company}/syncSettings").json()["settings"]
        return {s["dataType"] for s in settings if s["fetchOnFirstLink"] or s["syncSchedule"] > 0}

    def count(self, model, *where) -> int:
        with self.engine.connect() as db:
            return db.scalar(select(func.count()).select_from(model).where(*where))

    def connection(self, connection_id: str) -> dict:
        with self.engine.connect() as db:
            return dict(db.execute(select(Connection.__table__).where(Connection.id == connection_id)).mappings().one())


def grant_dashboard(world: World, company: str, accounting: dict) -> None:
    world.ledger.grant(company, "dashboard", connections=[accounting["id"]], wording_version="v1",
                       actor="customer", channel="ui", at=parse_iso(accounting["created"]))


def test_an_unconsented_read_is_reconciled_at_once(world):
    company, accounting = world.company_with("Accounting")
    grant_dashboard(world, company, accounting)
    with world.http() as http:
        history = http.get(f"/companies/{company}/data/history", params={"pageSize": 5000}).json()["results"]
    pulled = {p["dataType"] for p in history if p["connectionId"] == accounting["id"]} - DASHBOARD
    assert pulled, "the seed pulled types beyond Dashboard"
    data_type = min(pulled)
    assert world.read(company, accounting["id"], data_type, AT - timedelta(minutes=1)) == "stored"

    summary = world.run(AT)
    assert summary.violations == 1 and summary.reconciled_at_once == [company]
    assert summary.processed == {"read.completed": 1} and summary.codat_requests > 0
    with world.engine.connect() as db:
        assert list_findings(db, kind="unconsented_pull", company_id=company)
    assert world.count(DeletionItem, DeletionItem.company_id == company) > 0
    assert world.scheduled(company) == DASHBOARD  # cut at Codat, with no nightly reconciliation
    assert world.count(ReadObservation) == 1
    assert world.connection(accounting["id"])["last_read_at"] == AT - timedelta(minutes=1)


def test_a_consented_read_costs_no_codat_request(world):
    company, accounting = world.company_with("Accounting")
    grant_dashboard(world, company, accounting)
    world.read(company, accounting["id"], min(DASHBOARD), AT - timedelta(minutes=1))
    world.read(company, accounting["id"], sorted(DASHBOARD)[1], AT - timedelta(minutes=2), status="NotSupported")
    clear_requests(world.sandbox)
    summary = world.run(AT)
    assert requests_total(world.sandbox) == 0
    assert summary.violations == 0 and summary.codat_requests == 0 and summary.reconciled_at_once == []
    assert world.count(ReadObservation) == 2
    assert summary.as_dict()["processed"] == {"read.completed": 2}


def test_reconnection_restarts_authorization_and_an_older_disconnection_does_not_overwrite_it(world):
    company, bank = world.company_with("Banking")
    older, newer = AT - timedelta(minutes=30), AT - timedelta(minutes=10)
    world.send("connection.reconnected", company, {"connection": {**bank, "status": "Linked"}}, newer)
    world.run(AT)
    state = world.connection(bank["id"])
    assert (state["status"], state["last_authorized_at"], state["state_at"]) == ("Linked", newer, newer)
    world.send("connection.disconnected", company, {"connection": {**bank, "status": "Deauthorized"}}, older)
    summary = world.run(AT + timedelta(minutes=1))
    assert summary.stale_connection_events == 1
    state = world.connection(bank["id"])
    assert (state["status"], state["last_authorized_at"], state["state_at"]) == ("Linked", newer, newer)
    later = AT + timedelta(minutes=2)
    world.send("connection.disconnected", company, {"connection": {**bank, "status": "Deauthorized"}}, later)
    summary = world.run(AT + timedelta(minutes=3))
    assert world.connection(bank["id"])["status"] == "Deauthorized"
    assert summary.marked == {"connection_change": 1}


def test_a_failed_batch_is_retried_by_the_next_run_and_processed_once(world):
    import tasks.codat_events

    company, accounting = world.company_with("Accounting")
    grant_dashboard(world, company, accounting)
    world.read(company, accounting["id"], min(DASHBOARD), AT - timedelta(minutes=1), webhook_id="msg-x")

    def refuse(*args, **kwargs):
        raise RuntimeError("database refused the batch")

    original, tasks.codat_events.apply = tasks.codat_events.apply, refuse
    try:
        summary = world.run(AT)
    finally:
        tasks.codat_events.apply = original
    assert summary.retried == 1 and summary.events == 0 and "refused" in summary.errors[0]
    with world.engine.connect() as db:
        status, attempts = db.execute(select(CodatEvent.status, CodatEvent.attempts)).one()
    assert (status, attempts) == ("pending", 1)
    assert world.read(company, accounting["id"], "x", AT, webhook_id="msg-x") == "duplicate"
    summary = world.run(AT + timedelta(minutes=2))
    assert summary.events == 1 and world.count(ReadObservation) == 1
    assert world.run(AT + timedelta(minutes=4)).events == 0


def test_a_run_killed_mid_batch_loses_no_event_and_applies_none_twice(world):
    company, accounting = world.company_with("Accounting")
    grant_dashboard(world, company, accounting)
    types = sorted(DASHBOARD)
    rows = []
    for n in range(5000):
        at = AT - timedelta(seconds=n)
        body = {"id": str(n), "eventType": "read.completed", "generatedDate": iso(at),
                "payload": {"referenceCompany": {"id": company},
                            "dataTypes": [{"connectionId": accounting["id"], "dataType": types[n % len(types)],
                                           "recordsModified": 1, "status": "Complete"}]}}
        rows.append({"id": f"evt-{n}", "event_type": "read.completed", "company_id": company, "generated_at": at,
                     "received_at": datetime.now(UTC), "body": json.dumps(body)})
    with world.engine.begin() as db:
        insert_new(db, CodatEvent.__table__, rows, key="id")
    env = cli_env()
    process = start([CONSENT, "run", "codat-events", "--now", iso(AT), "--json"], env)
    done = lambda: world.count(CodatEvent, CodatEvent.status == "done") > 0
    kill_when(process, done, timeout=240)
    killed_at_done = world.count(CodatEvent, CodatEvent.status == "done")
    assert 0 < killed_at_done < 5000 or killed_at_done == 5000
    assert world.count(ReadObservation) == killed_at_done  # effects and done commit together
    time.sleep(0.1)
    finished = run_to_end([CONSENT, "run", "codat-events", "--now", iso(AT + timedelta(minutes=10)), "--json"], env)
    summary = json.loads(finished.stdout)
    assert summary["events"] == 5000 - killed_at_done
    assert world.count(CodatEvent, CodatEvent.status == "done") == 5000
    assert world.count(ReadObservation) == 5000
    with world.engine.begin() as db:  # nothing left to take
        db.execute(update(CodatEvent).values(claimed_until=None))


def test_a_deauthorization_at_the_sandbox_then_a_reconnection_entitles_the_bank_again(world):
    company, bank = world.company_with("Banking")
    world.ledger.grant(company, "lending", connections=[bank["id"]], wording_version="v1", actor="customer",
                       channel="ui", at=parse_iso(bank["created"]))
    with world.http() as http:
        http.post("/_sandbox/webhooks", json={"url": world.url, "secret": SECRET}).raise_for_status()
        http.post(f"/_sandbox/connections/{bank['id']}/deauthorize").raise_for_status()
        http.post("/_sandbox/webhooks/drain", json={"timeout": 10}).raise_for_status()  # sent off the request
    world.run(AT)
    assert world.connection(bank["id"])["status"] == "Deauthorized"
    assert world.ledger.entitlements(company, now=AT).query("connection_id == @bank['id']").empty

    reconnected = AT + timedelta(minutes=5)
    world.send("connection.reconnected", company, {"connection": {**bank, "status": "Linked"}}, reconnected)
    world.run(reconnected + timedelta(minutes=1))
    state = world.connection(bank["id"])
    assert (state["status"], state["last_authorized_at"]) == ("Linked", reconnected)
    assert not world.ledger.entitlements(company, now=reconnected).query("connection_id == @bank['id']").empty
