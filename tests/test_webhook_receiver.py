"""Codat webhooks in: the receiver verifies each delivery with the standardwebhooks library, stores it
whole in the inbox once, and answers at once; every refusal stores nothing, and no header shape is a 500."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import select
from standardwebhooks import Webhook

from codat_sandbox.runner import serving
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.models import CodatEvent
from consent_lifecycle.webhook_receiver import create_receiver
from deployments.webhooks import Nudger

SECRET = "whsec_" + base64.b64encode(b"codat-webhook-signing-key-for-tests").decode()
EVENT = {"id": "5f0d", "eventType": "company.created", "generatedDate": "2026-11-01T12:00:00Z",
         "payload": {"id": "c1", "name": "Acme"}}


def signed(body: bytes, webhook_id: str, stamp: int, secret: str = SECRET) -> str:
    moment = datetime.fromtimestamp(stamp, tz=UTC)
    return Webhook(secret).sign(webhook_id, moment, body.decode())


def deliver(url: str, body: dict | bytes, *, secret: str = SECRET, webhook_id: str = "msg_1",
            stamp: int | None = None, signature: str | None = None, prefix: str = "webhook") -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = int(time.time()) if stamp is None else stamp
    headers = {f"{prefix}-id": webhook_id, f"{prefix}-timestamp": str(stamp),
               f"{prefix}-signature": signature or signed(raw, webhook_id, stamp, secret)}
    return httpx.post(url, content=raw, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    from consent_lifecycle.db.migrate import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('inbox') / 'consent.db'}"
    upgrade(url)
    engine = make_engine(url)
    nudges: list[int] = []
    with serving(create_receiver(SecretStr(SECRET), engine, lambda: nudges.append(1))) as base_url:
        yield {"url": f"{base_url}/webhooks/codat", "engine": engine, "nudges": nudges}
    engine.dispose()


def stored(engine) -> list[tuple[str, str]]:
    with engine.connect() as db:
        return [tuple(r) for r in db.execute(select(CodatEvent.id, CodatEvent.body).order_by(CodatEvent.id))]


def test_a_delivery_is_stored_whole_once_and_answered(receiver):
    url, before = receiver["url"], len(stored(receiver["engine"]))
    raw = json.dumps(EVENT, indent=1).encode()
    first = deliver(url, raw, webhook_id="msg_whole")
    again = deliver(url, raw, webhook_id="msg_whole")
    assert first.status_code == 200 and first.json()["status"] == "stored"
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    rows = [r for r in stored(receiver["engine"]) if r[0] == "msg_whole"]
    assert rows == [("msg_whole", raw.decode())] and len(stored(receiver["engine"])) == before + 1
    assert SECRET not in first.text + again.text
    assert receiver["nudges"]  # the stored delivery nudged processing; the duplicate is not stored again


def test_svix_headers_are_accepted(receiver):
    response = deliver(receiver["url"], EVENT, webhook_id="msg_svix", prefix="svix")
    assert response.json()["status"] == "stored"


def test_refusals_store_nothing(receiver):
    url, before = receiver["url"], stored(receiver["engine"])
    other = "whsec_" + base64.b64encode(b"someone-else").decode()
    assert deliver(url, EVENT, secret=other, webhook_id="r1").status_code == 401
    assert deliver(url, EVENT, signature="v1,bm90LWEtc2lnbmF0dXJl", webhook_id="r2").status_code == 401
    stale = deliver(url, EVENT, stamp=int(time.time()) - 3600, webhook_id="r3")
    assert stale.status_code == 401 and "too old" in stale.json()["error"]
    malformed = deliver(url, {"id": "x"}, webhook_id="r4")  # signed, but no eventType
    assert malformed.status_code == 400 and "eventType" in malformed.json()["error"]
    assert deliver(url, b"not json", webhook_id="r5").status_code == 400
    assert httpx.post(url, content=b"{}", timeout=10).status_code == 401  # no headers at all
    assert stored(receiver["engine"]) == before
    assert SECRET not in stale.text + malformed.text


def test_a_timestamp_far_from_our_injected_now_is_refused(tmp_path):
    from consent_lifecycle.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    engine = make_engine(url)
    later = lambda: datetime.now(UTC) + timedelta(minutes=10)
    with serving(create_receiver(SecretStr(SECRET), engine, clock=later)) as base_url:
        response = deliver(f"{base_url}/webhooks/codat", EVENT, webhook_id="late")
    assert response.status_code == 401 and "replay" in response.json()["error"]
    assert stored(engine) == []
    engine.dispose()


HEADER_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "v1", "v1,", ",", "v1,%%%", "v1,abc", "v1,Zm9v v1,YmFy", "v2,Zm9v", "v1,Zm9v,extra",
                     "v1,é", "v1,Zm9v==", "nan", "inf", "-1", "1e30", "99999999999999999999"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(signature=HEADER_TEXT, stamp=HEADER_TEXT, webhook_id=HEADER_TEXT,
       body=st.one_of(st.binary(max_size=40), st.just(b"\xff\xfe{}")), svix=st.booleans())
def test_no_header_shape_is_a_server_error(receiver, signature, stamp, webhook_id, body, svix):
    prefix = "svix" if svix else "webhook"
    headers = {f"{prefix}-signature": signature, f"{prefix}-timestamp": stamp, f"{prefix}-id": webhook_id}
    try:
        encoded = {k: v.encode("latin-1") for k, v in headers.items()}
    except UnicodeEncodeError:
        encoded = {k: v.encode("utf-8") for k, v in headers.items()}
    if any(b"\n" in v or b"\r" in v or b"\x00" in v for v in encoded.values()):
        return  # not sendable as an HTTP header
    try:
        response = httpx.post(receiver["url"], content=body, headers=encoded, timeout=10)
    except httpx.LocalProtocolError:
        return  # httpx refuses to send it: nothing reaches us
    assert response.status_code in (400, 401), response.text
    assert SECRET not in response.text


def test_the_nudge_is_debounced_and_never_raises():
    emitted: list[float] = []
    clock = iter([0.0, 0.2, 5.0, 5.0]).__next__

    def emit() -> None:
        emitted.append(1)
        raise RuntimeError("no Prefect server")

    nudge = Nudger(emit, interval=1.0, clock=clock)
    nudge()  # no loop: fires at once, the failure is logged
    assert emitted == [1]


def test_serve_refuses_to_start_without_the_secret(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from consent_lifecycle.cli import app

    monkeypatch.delenv("CONSENT_CODAT_WEBHOOK_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    result = CliRunner().invoke(app, ["webhooks", "serve", "--port", "1"])
    assert result.exit_code == 2 and "CONSENT_CODAT_WEBHOOK_SECRET" in result.output
