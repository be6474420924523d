"""Codat webhooks in: the sandbox signs and sends them as Codat does; the receiver verifies, records each
delivery once, and runs a targeted expiry scan that updates the snapshot."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from codat_sandbox.runner import serving
from consent_lifecycle.codat.webhooks import sign
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.models import CodatEvent, Connection
from consent_lifecycle.webhook_receiver import create_receiver
from flows.connection_expiry_scan import connection_expiry_scan
from tests.fixtures_sandbox import SANDBOX_NOW, sandbox_client

pytestmark = pytest.mark.prefect
SECRET = "whsec_" + base64.b64encode(b"codat-webhook-signing-key-for-tests").decode()


@pytest.fixture
def receiver(flow_env, fresh_sandbox, sqlite_url):
    import asyncio

    asyncio.run(connection_expiry_scan(now=SANDBOX_NOW))
    engine = make_engine(sqlite_url)
    scanned: list[str] = []

    async def targeted_scan(event):
        scanned.append(event.company_id)
        await connection_expiry_scan(company_ids=[event.company_id], now=SANDBOX_NOW + timedelta(hours=1))

    with serving(create_receiver(SecretStr(SECRET), engine, targeted_scan)) as base_url:
        url = f"{base_url}/webhooks/codat"
        with sandbox_client(fresh_sandbox) as http:
            http.post("/_sandbox/webhooks", json={"url": url, "secret": SECRET}).raise_for_status()
        yield {"url": url, "engine": engine, "scanned": scanned}


def linked_bank(sandbox) -> tuple[str, str]:
    with sandbox_client(sandbox) as http:
        for company in http.get("/companies", params={"pageSize": 100}).json()["results"]:
            for connection in company["dataConnections"]:
                if connection["sourceType"] == "Banking" and connection["status"] == "Linked":
                    return company["id"], connection["id"]
    pytest.fail("no Linked bank")


def status_in_snapshot(engine, connection_id: str) -> str:
    with engine.connect() as db:
        return db.scalar(select(Connection.status).where(Connection.id == connection_id))


def test_a_deauthorization_at_codat_reaches_the_snapshot_through_a_webhook(receiver, fresh_sandbox):
    company, bank = linked_bank(fresh_sandbox)
    assert status_in_snapshot(receiver["engine"], bank) == "Linked"
    with sandbox_client(fresh_sandbox) as http:
        http.post(f"/_sandbox/connections/{bank}/deauthorize").raise_for_status()
        assert status_in_snapshot(receiver["engine"], bank) == "Deauthorized"
        http.post(f"/_sandbox/connections/{bank}/reconnect").raise_for_status()
        deliveries = http.get("/_sandbox/webhooks/deliveries").json()
    assert status_in_snapshot(receiver["engine"], bank) == "Linked"
    assert [(d["event_type"], d["status"]) for d in deliveries] == [
        ("connection.disconnected", 200), ("connection.reconnected", 200),
    ]
    assert receiver["scanned"] == [company, company]


def deliver(url: str, body: dict, *, secret: str = SECRET, webhook_id: str = "msg_1", stamp: int | None = None,
            signature: str | None = None) -> httpx.Response:
    raw = json.dumps(body).encode()
    stamp = int(time.time()) if stamp is None else stamp
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(stamp),
               "webhook-signature": signature or sign(SecretStr(secret), webhook_id, stamp, raw)}
    return httpx.post(url, content=raw, headers=headers, timeout=10)


EVENT = {"id": "5f0d", "eventType": "company.created", "generatedDate": "2026-11-01T12:00:00Z",
         "payload": {"id": "c1", "name": "Acme"}}


def test_bad_signature_stale_timestamp_and_replay_are_refused(receiver):
    url = receiver["url"]
    assert deliver(url, EVENT, secret="whsec_" + base64.b64encode(b"someone-else").decode()).status_code == 401
    assert deliver(url, EVENT, signature="v1,bm90LWEtc2lnbmF0dXJl").status_code == 401
    stale = deliver(url, EVENT, stamp=int(time.time()) - 3600)
    assert stale.status_code == 400 and "replay" in stale.json()["error"]
    assert deliver(url, {"id": "x"}, webhook_id="msg_bad").status_code == 400  # no eventType: malformed
    with receiver["engine"].connect() as db:
        assert db.scalars(select(CodatEvent.id)).all() == []  # nothing recorded so far

    first = deliver(url, EVENT, webhook_id="msg_7")
    again = deliver(url, EVENT, webhook_id="msg_7")
    assert first.json()["status"] == "accepted" and again.json()["status"] == "duplicate"
    assert SECRET not in first.text + again.text + stale.text
    with receiver["engine"].connect() as db:
        assert db.scalars(select(CodatEvent.id)).all() == ["msg_7"]
