"""The sandbox's webhooks as Codat's: consumers (`/webhooks`) with their own signing secrets, deliveries
off the request path that a real receiver verifies with the standardwebhooks library, at-least-once
retries with the same webhook-id, delivery faults, and the events the Codat routes raise."""

from __future__ import annotations

import base64
import socket
import threading
import time

import httpx
import pytest

from tests.fixtures_receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"sandbox-consumer-secret-for-tests").decode()


def drain(http: httpx.Client, timeout: float = 10.0) -> dict:
    response = http.post("/_sandbox/webhooks/drain", json={"timeout": timeout})
    assert response.status_code == 200, response.text
    return response.json()


def consumer(http: httpx.Client, receiver: Receiver, *event_types: str, tags: list[str] | None = None) -> str:
    """A consumer of `event_types` at the receiver, its secret pinned to SECRET; its id."""
    body = {"url": receiver.url, "eventTypes": list(event_types), **({"companyTags": tags} if tags else {})}
    created = http.post("/webhooks", json=body)
    assert created.status_code == 201, created.text
    webhook_id = created.json()["id"]
    http.post(f"/_sandbox/webhooks/{webhook_id}/secret", json={"secret": SECRET}).raise_for_status()
    return webhook_id


def new_company(http: httpx.Client, name: str = "Acme Ltd", **extra) -> dict:
    response = http.post("/companies", json={"name": name, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_consumers_are_created_listed_read_and_deleted_with_their_own_secret(sandbox_http):
    created = sandbox_http.post(
        "/webhooks",
        json={
            "url": "http://127.0.0.1:9/hook",
            "eventTypes": ["read.completed"],
            "companyTags": ["region:uk"],
        },
    )
    assert created.status_code == 201
    doc = created.json()
    assert doc == {
        "id": doc["id"],
        "url": "http://127.0.0.1:9/hook",
        "disabled": False,
        "eventTypes": ["read.completed"],
        "companyTags": ["region:uk"],
    }
    listed = sandbox_http.get("/webhooks").json()
    assert listed["results"] == [doc] and listed["totalResults"] == 1 and listed["pageNumber"] == 1
    assert sandbox_http.get(f"/webhooks/{doc['id']}").json() == doc
    secret = sandbox_http.get(f"/_sandbox/webhooks/{doc['id']}/secret").json()["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert secret not in created.text + str(listed)
    pinned = sandbox_http.post(f"/_sandbox/webhooks/{doc['id']}/secret", json={"secret": SECRET})
    assert pinned.json() == {"secret": SECRET}
    assert sandbox_http.get(f"/_sandbox/webhooks/{doc['id']}/secret").json() == {"secret": SECRET}
    other = sandbox_http.post("/webhooks", json={"url": "https://example.com/h", "eventTypes": []}).json()
    assert sandbox_http.get(f"/_sandbox/webhooks/{other['id']}/secret").json()["secret"] != SECRET
    assert sandbox_http.delete(f"/webhooks/{doc['id']}").status_code == 204
    assert sandbox_http.get(f"/webhooks/{doc['id']}").status_code == 404
    assert sandbox_http.delete(f"/webhooks/{doc['id']}").status_code == 404
    assert [c["id"] for c in sandbox_http.get("/webhooks").json()["results"]] == [other["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": "ftp://x"}, "url"),
        ({"url": "http://x", "eventTypes": "read.completed"}, "eventTypes"),
        ({"url": "http://x", "companyTags": ["x" * 129]}, "companyTags"),
        ({"url": "http://x", "disabled": "no"}, "disabled"),
    ],
)
def test_a_bad_consumer_is_a_400_naming_the_field(sandbox_http, body, field):
    response = sandbox_http.post("/webhooks", json=body)
    assert response.status_code == 400 and field in response.json()["error"]
    assert sandbox_http.get("/webhooks").json()["totalResults"] == 0


def test_a_bad_secret_or_setting_is_a_400_naming_the_field(sandbox_http, receiver):
    webhook_id = consumer(sandbox_http, receiver)
    bad = sandbox_http.post(f"/_sandbox/webhooks/{webhook_id}/secret", json={"secret": "whsec_%%%"})
    assert bad.status_code == 400 and "secret" in bad.json()["error"]
    assert sandbox_http.post("/_sandbox/webhooks/settings", json={"retry_scale": -1}).status_code == 400
    assert sandbox_http.post("/_sandbox/webhooks/settings", json={"speed": 1}).status_code == 400
    assert sandbox_http.post("/_sandbox/webhooks/drain", json={"timeout": "x"}).status_code == 400
    assert sandbox_http.get("/_sandbox/webhooks/nope/secret").status_code == 404


def test_a_delivery_is_signed_with_the_consumers_secret_and_only_subscribed_events_go(sandbox_http, receiver):
    consumer(sandbox_http, receiver, "company.created")
    company = new_company(sandbox_http, tags={"region": "uk"})
    sandbox_http.post(f"/companies/{company['id']}/connections", json={"platformKey": "gbol"})
    drain(sandbox_http)
    [event] = receiver.verified(SECRET)
    assert event["eventType"] == "company.created" and event["generatedDate"] == "2026-11-01T12:00:00Z"
    assert event["payload"]["id"] == company["id"] and event["payload"]["tags"] == {"region": "uk"}
    assert "dataConnections" not in event["payload"]
    [received] = receiver.received
    assert received.headers["webhook-id"] == event["id"]
    attempts = sandbox_http.get("/_sandbox/webhooks/deliveries").json()
    assert [(a["id"], a["event_type"], a["status"], a["attempt"], a["outcome"]) for a in attempts] == [
        (event["id"], "company.created", 204, 1, "delivered")
    ]


def test_company_tags_filter_deliveries(sandbox_http, receiver):
    consumer(sandbox_http, receiver, tags=["region:eu"])
    new_company(sandbox_http, "Uk Ltd", tags={"region": "uk"})
    eu = new_company(sandbox_http, "Eu GmbH", tags={"region": "eu"})
    drain(sandbox_http)
    assert [e["payload"]["id"] for e in receiver.verified(SECRET)] == [eu["id"]]


def test_a_failed_attempt_is_retried_with_the_same_webhook_id(sandbox_http, receiver):
    sandbox_http.post("/_sandbox/webhooks/settings", json={"retry_scale": 0.001}).raise_for_status()
    consumer(sandbox_http, receiver)
    receiver.status = 500  # until the plan below takes over
    new_company(sandbox_http)
    while not sandbox_http.get("/_sandbox/webhooks/deliveries").json():
        pass  # the first attempt failed; the retries go on every ~5 ms .. 36 s (scaled)
    receiver.status = None
    drain(sandbox_http)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) >= 2 and len(set(ids)) == 1
    attempts = sandbox_http.get("/_sandbox/webhooks/deliveries").json()
    assert [(a["attempt"], a["status"], a["outcome"]) for a in attempts][:1] == [(1, 500, "retrying")]
    assert (attempts[-1]["status"], attempts[-1]["outcome"]) == (204, "delivered")
    assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
    receiver.verified(SECRET)  # every attempt signed afresh, each verifies


def test_an_unreachable_consumer_keeps_drain_pending_until_its_timeout(sandbox_http):
    created = sandbox_http.post(
        "/webhooks", json={"url": "http://127.0.0.1:9/nobody", "eventTypes": []}
    ).json()
    assert created["id"]
    new_company(sandbox_http)
    response = sandbox_http.post("/_sandbox/webhooks/drain", json={"timeout": 0.5})
    assert response.status_code == 408 and response.json()["pending"]["scheduled"] == 1
    attempts = sandbox_http.get("/_sandbox/webhooks/deliveries").json()
    assert [(a["attempt"], a["status"], a["outcome"]) for a in attempts] == [(1, None, "retrying")]


def test_the_shortcut_route_still_sends_everything_with_its_secret(sandbox_http, receiver):
    answer = sandbox_http.post("/_sandbox/webhooks", json={"url": receiver.url, "secret": SECRET}).json()
    assert answer["enabled"] and answer["id"]
    again = sandbox_http.post("/_sandbox/webhooks", json={"url": receiver.url, "secret": SECRET}).json()
    assert [c["id"] for c in sandbox_http.get("/webhooks").json()["results"]] == [again["id"]]  # replaced
    company = new_company(sandbox_http)
    sandbox_http.delete(f"/companies/{company['id']}")
    drain(sandbox_http)
    assert sorted(e["eventType"] for e in receiver.verified(SECRET)) == ["company.created", "company.deleted"]
    assert sandbox_http.post("/_sandbox/webhooks", json={}).json()["enabled"] is False
    assert sandbox_http.get("/webhooks").json()["totalResults"] == 0


def many_companies(http: httpx.Client, count: int) -> list[str]:
    return [new_company(http, f"Company {n}")["id"] for n in range(count)]


def test_drop_and_duplicate_faults_change_deliveries_as_set(sandbox_http, receiver):
    consumer(sandbox_http, receiver, "company.created")
    sandbox_http.post("/_sandbox/faults", json={"webhook_drop": 0.3, "webhook_duplicate": 0.4, "seed": 3})
    companies = many_companies(sandbox_http, 200)
    drain(sandbox_http)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    delivered = {e["payload"]["id"] for e in receiver.verified(SECRET)}
    assert 0.2 * 200 < 200 - len(delivered) < 0.4 * 200  # lost for good: no retry brings them
    twice = len(ids) - len(set(ids))
    assert 0.3 * len(delivered) < twice < 0.5 * len(delivered)  # same webhook-id, twice
    outcomes = [a["outcome"] for a in sandbox_http.get("/_sandbox/webhooks/deliveries").json()]
    assert outcomes.count("dropped") == 200 - len(delivered) and delivered <= set(companies)


def test_reorder_and_delay_faults_hold_deliveries_back(sandbox_http, receiver):
    consumer(sandbox_http, receiver, "company.created")
    sandbox_http.post("/_sandbox/faults", json={"webhook_reorder": 0.3, "seed": 5}).raise_for_status()
    companies = many_companies(sandbox_http, 60)
    drain(sandbox_http)
    order = [e["payload"]["id"] for e in receiver.verified(SECRET)]
    assert sorted(order) == sorted(companies) and order != companies
    receiver.clear()
    faults = {"webhook_delay": 1.0, "webhook_delay_seconds": 0.6, "seed": 5}
    sandbox_http.post("/_sandbox/faults", json=faults).raise_for_status()
    new_company(sandbox_http)
    assert sandbox_http.post("/_sandbox/webhooks/drain", json={"timeout": 0.2}).status_code == 408
    drain(sandbox_http)
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("webhook_drop", 1.5),
        ("webhook_reorder", "x"),
        ("webhook_delay_seconds", -1),
        ("webhook_duplicate", True),
    ],
)
def test_a_bad_webhook_fault_is_a_400_naming_the_field(sandbox_http, field, value):
    response = sandbox_http.post("/_sandbox/faults", json={field: value})
    assert response.status_code == 400 and field in response.json()["error"]


def test_company_connection_and_product_routes_raise_codats_events(sandbox_http, receiver):
    consumer(sandbox_http, receiver)
    company = new_company(sandbox_http, description="d", tags={"team": "cards"})
    cid = company["id"]
    assert sandbox_http.put(f"/companies/{cid}/products/lending").status_code == 204
    assert sandbox_http.put(f"/companies/{cid}/products/lending").status_code == 204  # no change, no event
    assert sandbox_http.delete(f"/companies/{cid}/products/lending").status_code == 204
    assert sandbox_http.put(f"/companies/{cid}/products/Not_A_Product").status_code == 400
    bank = sandbox_http.post(f"/companies/{cid}/connections", json={"platformKey": "upvr"}).json()
    sandbox_http.post(f"/_sandbox/connections/{bank['id']}/reconnect").raise_for_status()
    sandbox_http.post(f"/_sandbox/connections/{bank['id']}/deauthorize").raise_for_status()
    sandbox_http.post(f"/_sandbox/connections/{bank['id']}/reconnect").raise_for_status()
    sandbox_http.delete(f"/companies/{cid}/connections/{bank['id']}").raise_for_status()
    sandbox_http.delete(f"/companies/{cid}").raise_for_status()
    drain(sandbox_http)
    events = receiver.verified(SECRET)  # workers deliver in parallel: in any order, as Codat's
    assert sorted(e["eventType"] for e in events) == sorted(
        [
            "company.created",
            "company.product.added",
            "company.product.removed",
            "connection.created",
            "connection.connected",
            "connection.disconnected",
            "connection.reconnected",
            "connection.deleted",
            "company.deleted",
        ]
    )
    by_type = {e["eventType"]: e["payload"] for e in events}
    added = by_type["company.product.added"]
    assert (added["id"], added["productId"], added["productName"], added["products"]) == (
        cid,
        "lending",
        "Lending",
        ["lending"],
    )
    assert by_type["company.product.removed"]["products"] == []
    reference = {
        "id": cid,
        "name": "Acme Ltd",
        "description": "d",
        "tags": {"team": "cards"},
        "links": {"portal": f"https://app.codat.io/companies/{cid}"},
    }
    statuses = {
        e["eventType"]: e["payload"]["connection"]["status"] for e in events if "connection" in e["payload"]
    }
    assert statuses == {
        "connection.created": "PendingAuth",
        "connection.connected": "Linked",
        "connection.disconnected": "Deauthorized",
        "connection.reconnected": "Linked",
        "connection.deleted": "Linked",
    }
    for event in events:
        if "referenceCompany" in event["payload"]:
            assert event["payload"]["referenceCompany"] == reference
            assert event["payload"]["connection"]["id"] == bank["id"]
            assert event["payload"]["connection"]["sourceType"] == "Banking"


def test_unlinking_is_a_disconnection(sandbox_http, receiver):
    consumer(sandbox_http, receiver, "connection.disconnected")
    company = sandbox_http.get("/companies", params={"pageSize": 50}).json()["results"]
    cid, conn = next((c["id"], n) for c in company for n in c["dataConnections"] if n["status"] == "Linked")
    sandbox_http.patch(
        f"/companies/{cid}/connections/{conn['id']}", json={"status": "Unlinked"}
    ).raise_for_status()
    drain(sandbox_http)
    [event] = receiver.verified(SECRET)
    assert event["payload"]["connection"]["status"] == "Unlinked"


def test_the_route_that_raises_an_event_does_not_wait_for_its_delivery(sandbox_http, receiver):
    consumer(sandbox_http, receiver, "company.created")
    receiver.delay = 1.5
    started = time.perf_counter()
    new_company(sandbox_http)
    assert time.perf_counter() - started < 1.0
    assert receiver.received == [] or len(receiver.received) == 1  # possibly arrived, not yet answered
    drain(sandbox_http)
    assert len(receiver.verified(SECRET)) == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.0 202 Accepted\r\n\r\nno length: the body ends when the connection does",
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["chunked", "close-delimited", "connection-close"],
)
def test_deliveries_read_any_http_1_framing_of_the_answer(sandbox_http, answer):
    """Three deliveries to a raw server that answers each the same way: every one is delivered (the
    sandbox's client reads the answer to its end and reconnects when the server closes)."""
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def handle(connection: socket.socket) -> None:
        """Answer each request on one connection until the answer's framing ends the connection."""
        with connection:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buffer) < length:
                    buffer += connection.recv(65536)
                seen.append(buffer[:length])
                buffer = buffer[length:]
                connection.sendall(answer)
                if b"chunked" not in answer:
                    return  # close-delimited or Connection: close: the server closes

    stop = threading.Event()
    server.settimeout(0.05)  # accept() wakes up to see `stop` (closing the socket would not wake it)

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.settimeout(None)
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    try:
        sandbox_http.post("/webhooks", json={"url": url}).raise_for_status()
        for n in range(3):
            new_company(sandbox_http, f"Framing {n}")
            drain(sandbox_http)  # one at a time: a worker reuses its connection, or reconnects
        outcomes = [a["outcome"] for a in sandbox_http.get("/_sandbox/webhooks/deliveries").json()]
        assert outcomes == ["delivered"] * 3 and len(seen) == 3
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
