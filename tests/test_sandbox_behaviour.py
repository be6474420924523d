"""How the sandbox behaves: paging, queries, seeding, clock and pulls, connection status, faults, limits."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from codat_sandbox import SandboxConfig, running_sandbox
from consent_lifecycle.clock import parse_iso
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from tests.fixtures_sandbox import SANDBOX_API_KEY, SANDBOX_NOW, sandbox_client


def companies(client: httpx.Client, **params) -> dict:
    response = client.get("/companies", params={"pageSize": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()


def linked(client: httpx.Client, source_type: str) -> tuple[dict, dict]:
    for company in companies(client)["results"]:
        for conn in company["dataConnections"]:
            if conn["sourceType"] == source_type and conn["status"] == "Linked":
                return company, conn
    raise AssertionError(f"no Linked {source_type} connection")


def advance(client: httpx.Client, seconds: float) -> None:
    client.post("/_sandbox/clock/advance", json={"seconds": seconds}).raise_for_status()


# -- paging ------------------------------------------------------------------------------------------------


def test_paging_walks_every_company_once(sandbox_http: httpx.Client) -> None:
    seen: list[str] = []
    url = "/companies?page=1&pageSize=3"
    pages = 0
    while url:
        body = sandbox_http.get(url).json()
        pages += 1
        assert body["totalResults"] == 20 and body["pageSize"] == 3 and body["pageNumber"] == pages
        assert body["_links"]["self"]["href"] == "/companies"
        assert body["_links"]["current"]["href"] == f"/companies?page={pages}&pageSize=3"
        assert ("previous" in body["_links"]) == (pages > 1)
        seen += [c["id"] for c in body["results"]]
        url = body["_links"].get("next", {}).get("href")
    assert pages == 7 and len(seen) == 20 and len(set(seen)) == 20
    everything = companies(sandbox_http)["results"]
    assert [c["id"] for c in everything] == seen, "pages follow the one stable default order"
    assert [(c["created"], c["id"]) for c in everything] == sorted(
        (c["created"], c["id"]) for c in everything
    )
    past_end = sandbox_http.get("/companies", params={"page": 8, "pageSize": 3}).json()
    assert past_end["results"] == [] and past_end["totalResults"] == 20 and "next" not in past_end["_links"]


def test_paging_defaults_and_limits(sandbox_http: httpx.Client) -> None:
    body = sandbox_http.get("/companies").json()
    assert body["pageNumber"] == 1 and body["pageSize"] == 100 and len(body["results"]) == 20
    assert sandbox_http.get("/companies", params={"pageSize": 5000}).status_code == 200
    for params in ({"pageSize": 0}, {"pageSize": 5001}, {"page": 0}, {"page": "x"}, {"pageSize": "-1"}):
        response = sandbox_http.get("/companies", params=params)
        assert response.status_code == 400, params
        assert response.json()["validation"]["errors"][0]["itemId"] in ("page", "pageSize")


def test_order_by_and_paging_with_a_filter(sandbox_http: httpx.Client) -> None:
    names = [c["name"] for c in companies(sandbox_http, orderBy="-name")["results"]]
    assert names == sorted(names, key=str.lower, reverse=True) or names == sorted(names, reverse=True)
    syncs = [c["lastSync"] for c in companies(sandbox_http, orderBy="lastSync")["results"] if c["lastSync"]]
    assert syncs == sorted(syncs)
    uk = companies(sandbox_http, tags="region = uk")
    walked: list[str] = []
    for page in range(1, uk["totalResults"] // 2 + 2):
        body = sandbox_http.get(
            "/companies", params={"tags": "region = uk", "page": page, "pageSize": 2}
        ).json()
        assert body["totalResults"] == uk["totalResults"]
        if "next" in body["_links"]:
            assert "tags=region%20%3D%20uk" in body["_links"]["next"]["href"]
        walked += [c["id"] for c in body["results"]]
    assert walked == [c["id"] for c in uk["results"]]


# -- query language ----------------------------------------------------------------------------------------


def test_query_language_on_companies(sandbox_http: httpx.Client) -> None:
    everything = companies(sandbox_http)["results"]
    one = everything[3]

    def ids(query: str, **extra) -> list[str]:
        return [c["id"] for c in companies(sandbox_http, query=query, **extra)["results"]]

    assert ids(f"id={one['id']}") == [one["id"]]
    assert ids(f"id = {one['id'].upper()}") == [one["id"]]
    assert one["id"] not in ids(f"id!={one['id']}") and len(ids(f"id!={one['id']}")) == 19
    word = one["name"].split()[0]
    assert set(ids(f"name~{word.lower()}")) == {
        c["id"] for c in everything if word.lower() in c["name"].lower()
    }
    assert ids(f"name={one['name']}&&id={one['id']}") == [one["id"]]
    assert ids(f"name={one['name']}&&id!={one['id']}") == [
        c["id"] for c in everything if c["name"] == one["name"] and c["id"] != one["id"]
    ]
    other = everything[7]
    assert set(ids(f"id={one['id']}||id={other['id']}")) == {one["id"], other["id"]}
    assert ids(f"{{id={one['id']}||id={other['id']}}}&&name={other['name']}") == [other["id"]]
    cut = everything[10]["created"]
    assert ids(f"created>={cut}") == [c["id"] for c in everything if c["created"] >= cut]
    assert ids(f"created<{cut}") == [c["id"] for c in everything if c["created"] < cut]
    uk = [c["id"] for c in everything if c["tags"].get("region") == "uk"]
    assert ids("tags.region=uk") == uk and uk
    assert [c["id"] for c in companies(sandbox_http, tags="region = uk")["results"]] == uk
    assert [c["id"] for c in companies(sandbox_http, tags="region != uk")["results"]] == [
        c["id"] for c in everything if c["tags"].get("region") != "uk"
    ]
    team = everything[0]["tags"]["owningTeam"]
    assert [
        c["id"] for c in companies(sandbox_http, tags=f"region = uk && owningTeam ~ {team[:4]}")["results"]
    ] == [
        c["id"] for c in everything if c["tags"].get("region") == "uk" and team[:4] in c["tags"]["owningTeam"]
    ]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("colour=red", "colour"),
        ("name=x&&isCompleted=true", "isCompleted"),
        ("name", "name"),
        ("name=", None),
        ("{name=x", None),
        ("name>x", "name"),
        ("created>yesterday", "created"),
        ("id=not-a-uuid", "id"),
    ],
)
def test_bad_queries_are_400_naming_the_problem(
    sandbox_http: httpx.Client, query: str, named: str | None
) -> None:
    response = sandbox_http.get("/companies", params={"query": query})
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400 and body["error"].startswith("Error parsing query")
    if named:
        assert named in body["error"]


def test_queries_on_connections_and_pulls(sandbox_http: httpx.Client) -> None:
    company, _ = linked(sandbox_http, "Accounting")
    cid = company["id"]
    conns = sandbox_http.get(
        f"/companies/{cid}/connections", params={"query": "status=Linked&&sourceType=Accounting"}
    ).json()
    assert [c["id"] for c in conns["results"]] == [
        c["id"]
        for c in company["dataConnections"]
        if c["status"] == "Linked" and c["sourceType"] == "Accounting"
    ]
    history = sandbox_http.get(f"/companies/{cid}/data/history", params={"pageSize": 5000}).json()["results"]
    failed = sandbox_http.get(
        f"/companies/{cid}/data/history",
        params={"pageSize": 5000, "query": "status!=Complete&&status!=NotSupported"},
    ).json()
    assert failed["totalResults"] == sum(p["status"] not in ("Complete", "NotSupported") for p in history)
    response = sandbox_http.get(f"/companies/{cid}/data/history", params={"query": "isCompleted=false"})
    assert response.status_code == 400 and "isCompleted" in response.json()["error"]


# -- seeding -----------------------------------------------------------------------------------------------


def _snapshot(client: httpx.Client) -> str:
    body = companies(client)
    first = body["results"][0]["id"]
    parts = [
        body,
        client.get(f"/companies/{first}/dataStatus").json(),
        client.get(f"/companies/{first}/data/history", params={"pageSize": 5000}).json(),
        client.get(f"/companies/{first}/syncSettings").json(),
    ]
    return json.dumps(parts, sort_keys=True)


def test_seeding_is_deterministic(sandbox_http: httpx.Client) -> None:
    first = _snapshot(sandbox_http)
    sandbox_http.post("/_sandbox/reset", json={"companies": 20, "seed": 7}).raise_for_status()
    assert _snapshot(sandbox_http) == first
    sandbox_http.post("/_sandbox/reset", json={"companies": 20, "seed": 8}).raise_for_status()
    assert _snapshot(sandbox_http) != first


def test_eager_history_is_made_at_start_and_reads_as_the_lazy_one() -> None:
    """`eager_history` (what the benchmark serves) makes every company's pull history before the first
    request; what a client then reads is what a lazily made history gives."""
    histories = []
    for eager in (False, True):
        config = SandboxConfig(api_key=SANDBOX_API_KEY, companies=20, now=SANDBOX_NOW, eager_history=eager)
        with running_sandbox(config) as handle, sandbox_client(handle) as http:
            world = handle.app.state.sandbox.world
            pending = world.store.scalar("SELECT count(*) FROM companies WHERE history_done = 0")
            assert pending == (0 if eager else 20)
            ids = [c["id"] for c in companies(http, pageSize=20)["results"]]
            pages = {c: http.get(f"/companies/{c}/data/history", params={"pageSize": 5000}) for c in ids}
            histories.append({c: page.json() for c, page in pages.items()})
    lazy, eager = histories
    assert eager == lazy and sum(page["totalResults"] for page in lazy.values()) > 20


def test_seeded_world_has_the_shapes_flows_need(sandbox_http: httpx.Client) -> None:
    sandbox_http.post("/_sandbox/reset", json={"companies": 300}).raise_for_status()
    now = SANDBOX_NOW
    statuses: Counter = Counter()
    banking_ages: list[float] = []
    stale_accounting = 0
    results = companies(sandbox_http, pageSize=300)["results"]
    assert len(results) == 300
    for company in results:
        kinds = Counter(c["sourceType"] for c in company["dataConnections"])
        assert kinds["Accounting"] == 1 and kinds["Banking"] <= 3 and kinds["Commerce"] <= 2
        assert company["tags"]["region"] in ("uk", "eu", "us")
        assert company["redirect"] == f"https://link.codat.io/company/{company['id']}"
        syncs = [c["lastSync"] for c in company["dataConnections"] if c["lastSync"]]
        assert company["lastSync"] == (max(syncs) if syncs else None)
        for conn in company["dataConnections"]:
            statuses[conn["status"]] += 1
            age_days = (now - parse_iso(conn["created"])).total_seconds() / 86400
            if conn["sourceType"] == "Banking":
                banking_ages.append(age_days)
            if conn["status"] == "Deauthorized":
                assert any(e["status"] == "Active" for e in conn["dataConnectionErrors"])
            if conn["status"] == "PendingAuth":
                assert conn["lastSync"] is None
            last = parse_iso(conn["lastSync"]) if conn["lastSync"] else None
            accounting = conn["sourceType"] == "Accounting" and conn["status"] == "Linked"
            if accounting and last and (now - last).days > 60:
                stale_accounting += 1
    assert statuses["Linked"] > sum(statuses.values()) / 2
    assert all(statuses[s] > 0 for s in ("Deauthorized", "Unlinked", "PendingAuth"))
    assert any(80 <= age <= 100 for age in banking_ages) and any(age > 100 for age in banking_ages)
    assert stale_accounting > 0
    settings = sandbox_http.get(f"/companies/{results[0]['id']}/syncSettings").json()["settings"]
    scheduled = {s["dataType"] for s in settings}
    assert {"journals", "purchaseOrders", "commerce-disputes"} <= scheduled


def test_seeded_history_agrees_with_last_sync(sandbox_http: httpx.Client) -> None:
    for company in companies(sandbox_http)["results"]:
        history = sandbox_http.get(
            f"/companies/{company['id']}/data/history", params={"pageSize": 5000}
        ).json()["results"]
        status = sandbox_http.get(f"/companies/{company['id']}/dataStatus").json()
        for conn in company["dataConnections"]:
            complete = [
                p["completed"]
                for p in history
                if p["connectionId"] == conn["id"] and p["status"] == "Complete"
            ]
            assert conn["lastSync"] == (max(complete) if complete else None), conn
        for pull in history:
            assert pull["requested"] <= pull["completed"] <= "2026-11-01T12:00:00Z"
            assert pull["isCompleted"] and pull["progress"] == 100
        for data_type, entry in status.items():
            live = {c["id"] for c in company["dataConnections"]}
            pulls = [p for p in history if p["dataType"] == data_type and p["connectionId"] in live]
            newest = max(p["requested"] for p in pulls)
            assert entry["latestSyncId"] in {p["id"] for p in pulls if p["requested"] == newest}
            ok = [p for p in pulls if p["status"] == "Complete"]
            assert entry.get("lastSuccessfulSync") == (max(p["completed"] for p in ok) if ok else None)
            assert entry["currentStatus"] == next(
                p["status"] for p in pulls if p["id"] == entry["latestSyncId"]
            )


# -- clock and pulls ---------------------------------------------------------------------------------------


def test_clock_admin(sandbox_http: httpx.Client) -> None:
    assert sandbox_http.get("/_sandbox/clock").json() == {"now": "2026-11-01T12:00:00Z", "frozen": True}
    assert (
        sandbox_http.post("/_sandbox/clock/advance", json={"seconds": 90}).json()["now"]
        == "2026-11-01T12:01:30Z"
    )
    assert sandbox_http.post("/_sandbox/clock", json={"now": "2027-01-01T00:00:00+01:00"}).json() == {
        "now": "2026-12-31T23:00:00Z",
        "frozen": True,
    }
    real = sandbox_http.post("/_sandbox/clock", json={"now": None}).json()
    assert real["frozen"] is False
    assert abs((parse_iso(real["now"]) - datetime.now(UTC)).total_seconds()) < 5
    assert sandbox_http.post("/_sandbox/clock", json={"now": "soon"}).status_code == 400


def test_pull_completes_after_the_duration_and_updates_last_sync_and_data_status(
    sandbox_http: httpx.Client,
) -> None:
    company, conn = linked(sandbox_http, "Banking")
    cid = company["id"]
    url = f"/companies/{cid}/data/queue/banking-transactions"
    pull = sandbox_http.post(url, params={"connectionId": conn["id"]}).json()
    assert pull["status"] == "Queued" and pull["progress"] == 0 and not pull["isCompleted"]
    assert pull["requested"] == "2026-11-01T12:00:00Z" and "completed" not in pull
    again = sandbox_http.post(url, params={"connectionId": conn["id"]})
    assert again.status_code == 400 and "DatasetAlreadyInProgress" in again.json()["error"]
    status = sandbox_http.get(f"/companies/{cid}/dataStatus").json()["banking-transactions"]
    assert status["currentStatus"] == "Queued" and status["latestSyncId"] == pull["id"]

    advance(sandbox_http, 30)
    mid = sandbox_http.get(f"/companies/{cid}/data/history/{pull['id']}").json()
    assert mid["status"] == "Fetching" and mid["progress"] == 50 and not mid["isCompleted"]

    advance(sandbox_http, 30)
    done = sandbox_http.get(f"/companies/{cid}/data/history/{pull['id']}").json()
    assert done["status"] == "Complete" and done["isCompleted"] and not done["isErrored"]
    assert done["progress"] == 100 and done["completed"] == "2026-11-01T12:01:00Z"
    assert (
        sandbox_http.get(f"/companies/{cid}/connections/{conn['id']}").json()["lastSync"] == done["completed"]
    )
    assert sandbox_http.get(f"/companies/{cid}").json()["lastSync"] == done["completed"]
    status = sandbox_http.get(f"/companies/{cid}/dataStatus").json()["banking-transactions"]
    assert status == {
        "dataType": "banking-transactions",
        "currentStatus": "Complete",
        "lastSuccessfulSync": done["completed"],
        "latestSyncId": pull["id"],
        "latestSuccessfulSyncId": pull["id"],
    }
    assert sandbox_http.post(url, params={"connectionId": conn["id"]}).status_code == 200


def test_pull_on_a_connection_that_is_not_linked_ends_in_auth_error(sandbox_http: httpx.Client) -> None:
    company, conn = linked(sandbox_http, "Accounting")
    sandbox_http.post(f"/_sandbox/connections/{conn['id']}/deauthorize").raise_for_status()
    pull = sandbox_http.post(
        f"/companies/{company['id']}/data/queue/invoices", params={"connectionId": conn["id"]}
    ).json()
    assert pull["status"] == "Queued"
    advance(sandbox_http, 61)
    done = sandbox_http.get(f"/companies/{company['id']}/data/history/{pull['id']}").json()
    assert done["status"] == "AuthError" and done["isErrored"] and done["errorMessage"]
    after = sandbox_http.get(f"/companies/{company['id']}/connections/{conn['id']}").json()
    assert after["lastSync"] == conn["lastSync"], "a failed pull does not move lastSync"


def test_refresh_all_queues_first_link_types_on_linked_connections(sandbox_http: httpx.Client) -> None:
    company, _ = linked(sandbox_http, "Accounting")
    cid = company["id"]
    settings = sandbox_http.get(f"/companies/{cid}/syncSettings").json()["settings"]
    assert sandbox_http.post(f"/companies/{cid}/data/all").status_code == 204
    queued = sandbox_http.get(
        f"/companies/{cid}/data/history", params={"pageSize": 5000, "query": "status=Queued"}
    ).json()["results"]
    expected = sorted(
        (conn["id"], s["dataType"])
        for s in settings
        if s["fetchOnFirstLink"]
        for conn in company["dataConnections"]
        if conn["status"] == "Linked" and DATA_TYPE_SOURCE[s["dataType"]] == conn["sourceType"]
    )
    assert sorted((p["connectionId"], p["dataType"]) for p in queued) == expected
    assert sandbox_http.post(f"/companies/{cid}/data/all").status_code == 204  # nothing queued twice
    assert sandbox_http.get(f"/companies/{cid}/data/history", params={"query": "status=Queued"}).json()[
        "totalResults"
    ] == len(expected)


def test_queue_rejects_unknown_data_type_and_foreign_connection(sandbox_http: httpx.Client) -> None:
    results = companies(sandbox_http)["results"]
    a, b = results[0], results[1]
    assert sandbox_http.post(f"/companies/{a['id']}/data/queue/notAType").status_code == 400
    foreign = b["dataConnections"][0]["id"]
    assert (
        sandbox_http.post(
            f"/companies/{a['id']}/data/queue/invoices", params={"connectionId": foreign}
        ).status_code
        == 404
    )


# -- connections -------------------------------------------------------------------------------------------


def test_deauthorize_and_reconnect(sandbox_http: httpx.Client) -> None:
    company, conn = linked(sandbox_http, "Banking")
    gone = sandbox_http.post(f"/_sandbox/connections/{conn['id']}/deauthorize").json()
    assert gone["status"] == "Deauthorized"
    active = [e for e in gone["dataConnectionErrors"] if e["status"] == "Active"]
    assert len(active) == 1 and active[0]["erroredOnUtc"] == "2026-11-01T12:00:00Z"
    assert sandbox_http.post(f"/_sandbox/connections/{conn['id']}/deauthorize").status_code == 400
    seen = sandbox_http.get(f"/companies/{company['id']}/connections/{conn['id']}").json()
    assert seen == gone
    advance(sandbox_http, 3600)
    back = sandbox_http.post(f"/_sandbox/connections/{conn['id']}/reconnect").json()
    assert back["status"] == "Linked"
    resolved = back["dataConnectionErrors"][-1]
    assert resolved["status"] == "Resolved" and resolved["resolvedOnUtc"] == "2026-11-01T13:00:00Z"
    assert sandbox_http.post(f"/_sandbox/connections/{conn['id']}/reconnect").status_code == 400
    assert (
        sandbox_http.post("/_sandbox/connections/00000000-0000-4000-8000-000000000000/reconnect").status_code
        == 404
    )


def test_first_link_queues_fetch_on_first_link_types(sandbox_http: httpx.Client) -> None:
    company = companies(sandbox_http)["results"][0]
    cid = company["id"]
    created = sandbox_http.post(f"/companies/{cid}/connections", json={"platformKey": "fztf"}).json()
    assert created["status"] == "PendingAuth" and created["lastSync"] is None
    sandbox_http.post(f"/_sandbox/connections/{created['id']}/reconnect").raise_for_status()
    settings = sandbox_http.get(f"/companies/{cid}/syncSettings").json()["settings"]
    expected = sorted(
        s["dataType"]
        for s in settings
        if s["fetchOnFirstLink"] and DATA_TYPE_SOURCE[s["dataType"]] == "Commerce"
    )
    pulls = sandbox_http.get(
        f"/companies/{cid}/data/history", params={"query": f"connectionId={created['id']}"}
    ).json()["results"]
    assert sorted(p["dataType"] for p in pulls) == expected


def test_unlink_and_delete_connection(sandbox_http: httpx.Client) -> None:
    company, conn = linked(sandbox_http, "Accounting")
    cid = company["id"]
    unlinked = sandbox_http.patch(f"/companies/{cid}/connections/{conn['id']}", json={"status": "Unlinked"})
    assert unlinked.status_code == 200 and unlinked.json()["status"] == "Unlinked"
    again = sandbox_http.patch(f"/companies/{cid}/connections/{conn['id']}", json={"status": "Unlinked"})
    assert again.status_code == 400
    assert (
        sandbox_http.patch(
            f"/companies/{cid}/connections/{conn['id']}", json={"status": "Linked"}
        ).status_code
        == 400
    )
    deleted = sandbox_http.delete(f"/companies/{cid}/connections/{conn['id']}")
    assert deleted.status_code == 200 and deleted.content == b""
    assert sandbox_http.get(f"/companies/{cid}/connections/{conn['id']}").status_code == 404
    after = sandbox_http.get(f"/companies/{cid}").json()
    assert conn["id"] not in [c["id"] for c in after["dataConnections"]]
    status = sandbox_http.get(f"/companies/{cid}/dataStatus").json()
    assert not any(DATA_TYPE_SOURCE[t] == "Accounting" for t in status), "its data is no longer reachable"


# -- faults ------------------------------------------------------------------------------------------------


def test_5xx_fault_has_codat_body_and_no_side_effect(sandbox_http: httpx.Client) -> None:
    before = companies(sandbox_http)["totalResults"]
    sandbox_http.post("/_sandbox/faults", json={"rate_5xx": 1.0, "seed": 1}).raise_for_status()
    for _ in range(5):
        response = sandbox_http.post("/companies", json={"name": "Should Not Exist"})
        assert response.status_code in (500, 503)
        body = response.json()
        assert body["statusCode"] == response.status_code and body["canBeRetried"] == "Unknown"
    assert sandbox_http.get("/_sandbox/faults").json()["rate_5xx"] == 1.0, "admin routes are never faulted"
    sandbox_http.post("/_sandbox/faults", json={}).raise_for_status()
    assert companies(sandbox_http)["totalResults"] == before


def test_429_fault_carries_retry_after(sandbox_http: httpx.Client) -> None:
    sandbox_http.post("/_sandbox/faults", json={"rate_429": 1.0, "retry_after_seconds": 7}).raise_for_status()
    response = sandbox_http.get("/companies")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json()["statusCode"] == 429


def test_faults_are_drawn_from_a_seeded_rng(sandbox_http: httpx.Client) -> None:
    def run() -> list[int]:
        sandbox_http.post(
            "/_sandbox/faults", json={"rate_5xx": 0.3, "rate_429": 0.2, "seed": 42}
        ).raise_for_status()
        return [sandbox_http.get("/companies", params={"pageSize": 1}).status_code for _ in range(30)]

    first = run()
    assert first == run()
    assert {200, 429} <= set(first) and set(first) & {500, 503}


def test_bad_fault_settings_are_400(sandbox_http: httpx.Client) -> None:
    for body in ({"rate_5xx": 2}, {"rate_429": 0.6, "rate_5xx": 0.6}, {"latency_ms": -1}, {"colour": 1}):
        response = sandbox_http.post("/_sandbox/faults", json=body)
        assert response.status_code == 400, body
        assert next(iter(body)) in response.json()["error"]


def test_timeout_fault_answers_504_without_blocking_others(fresh_sandbox) -> None:
    async def scenario() -> tuple[httpx.Response, float, float]:
        async with httpx.AsyncClient(
            base_url=fresh_sandbox.base_url, headers=fresh_sandbox.auth_header, timeout=10
        ) as client:
            await client.post("/_sandbox/faults", json={"rate_timeout": 1.0, "timeout_seconds": 0.8})
            start = time.monotonic()
            slow = asyncio.create_task(client.get("/companies"))
            await asyncio.sleep(0.1)
            clock = await client.get("/_sandbox/clock")  # admin routes are not faulted
            quick = time.monotonic() - start
            assert clock.status_code == 200
            response = await slow
            return response, quick, time.monotonic() - start

    response, quick, total = asyncio.run(scenario())
    assert response.status_code == 504 and response.json()["statusCode"] == 504
    assert quick < 0.6, "another request was served while the timed-out one slept"
    assert total >= 0.75, "the timed-out request answered only after timeout_seconds"


# -- rate limits -------------------------------------------------------------------------------------------


def test_rate_limit_per_minute(sandbox_http: httpx.Client) -> None:
    assert sandbox_http.post("/_sandbox/limits", json={"rate_limit_per_minute": 5}).json() == {
        "rate_limit_per_minute": 5,
        "concurrent_per_company": 10,
    }
    remaining = []
    for _ in range(5):
        response = sandbox_http.get("/companies", params={"pageSize": 1})
        assert response.status_code == 200
        assert response.headers["X-Rate-Limit-Limit"] == "5"
        parse_iso(response.headers["X-Rate-Limit-Reset"])
        remaining.append(int(response.headers["X-Rate-Limit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    sixth = sandbox_http.get("/companies", params={"pageSize": 1})
    assert sixth.status_code == 429 and sixth.json()["statusCode"] == 429
    assert 1 <= int(sixth.headers["Retry-After"]) <= 60
    assert sixth.headers["X-Rate-Limit-Remaining"] == "0"
    assert sandbox_http.get("/_sandbox/clock").status_code == 200, "admin routes are not rate limited"


def test_concurrent_requests_per_company(fresh_sandbox) -> None:
    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(
            base_url=fresh_sandbox.base_url, headers=fresh_sandbox.auth_header, timeout=10
        ) as client:
            await client.post("/_sandbox/limits", json={"concurrent_per_company": 2})
            await client.post("/_sandbox/faults", json={"latency_ms": 300})
            listing = (await client.get("/companies")).json()["results"]
            a, b = listing[0]["id"], listing[1]["id"]
            same = [client.get(f"/companies/{a}") for _ in range(4)]
            responses = await asyncio.gather(*same, client.get(f"/companies/{b}"))
            return list(responses[:4]), responses[4]

    same, other = asyncio.run(scenario())
    assert sorted(r.status_code for r in same) == [200, 200, 429, 429]
    for response in same:
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1" and response.json()["statusCode"] == 429
    assert other.status_code == 200, "another company has its own allowance"


# -- counters, auth, start-up ------------------------------------------------------------------------------


def test_request_counters(sandbox_http: httpx.Client) -> None:
    cid = companies(sandbox_http)["results"][0]["id"]
    sandbox_http.get(f"/companies/{cid}")
    sandbox_http.get(f"/companies/{cid}")
    sandbox_http.get("/companies/00000000-0000-4000-8000-000000000000")
    sandbox_http.get("/not-a-route")
    httpx.get(f"{sandbox_http.base_url}/companies")
    counts = sandbox_http.get("/_sandbox/requests").json()
    assert counts["counts"] == {"GET /companies": 2, "GET /companies/{companyId}": 3}
    assert counts["total"] == 5
    assert counts["by_status"] == {
        "GET /companies": {"200": 1, "401": 1},
        "GET /companies/{companyId}": {"200": 2, "404": 1},
    }
    assert sandbox_http.delete("/_sandbox/requests").status_code == 204
    assert sandbox_http.get("/_sandbox/requests").json() == {"total": 0, "counts": {}, "by_status": {}}


def test_401_without_or_with_a_wrong_key(fresh_sandbox) -> None:
    wrong = "Basic " + base64.b64encode(b"not-the-key").decode()
    for headers in (
        {},
        {"Authorization": wrong},
        {"Authorization": SANDBOX_API_KEY},
        {"Authorization": "Basic !!!"},
    ):
        for path in ("/companies", "/_sandbox/clock", "/no-such-route"):
            response = httpx.get(f"{fresh_sandbox.base_url}{path}", headers=headers)
            assert response.status_code == 401, (headers, path)
            assert response.json()["statusCode"] == 401
            assert SANDBOX_API_KEY not in response.text
    encoded = base64.b64encode(SANDBOX_API_KEY.encode()).decode()
    with sandbox_client(fresh_sandbox) as client:
        for response in (client.get("/companies"), client.get("/nope"), client.get("/companies?query=x")):
            assert SANDBOX_API_KEY not in response.text and encoded not in response.text
            assert SANDBOX_API_KEY not in str(response.headers)
    assert SANDBOX_API_KEY not in repr(fresh_sandbox) and SANDBOX_API_KEY not in repr(fresh_sandbox.config)


def test_running_sandbox_starts_fast_and_keeps_state_in_a_file(tmp_path) -> None:
    path = str(tmp_path / "sandbox.db")
    config = SandboxConfig(api_key="k", companies=50, state_path=path, now=SANDBOX_NOW + timedelta(days=1))
    start = time.monotonic()
    with running_sandbox(config) as handle:
        assert time.monotonic() - start < 1.0
        with sandbox_client(handle) as client:
            created = client.post("/companies", json={"name": "Persisted Ltd"}).json()
            assert client.get("/companies").json()["totalResults"] == 51
    with running_sandbox(config) as handle, sandbox_client(handle) as client:
        assert client.get(f"/companies/{created['id']}").json()["name"] == "Persisted Ltd"
