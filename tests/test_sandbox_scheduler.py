"""The sandbox's sync scheduler and out-of-band changes, over real HTTP: advancing the clock runs each
company's due syncs on its Linked connections, moves lastSync on and sends one read.completed per
connection and round; a Portal edit of sync settings sends nothing; a rogue pull is reported."""

from __future__ import annotations

import base64
from collections import defaultdict

import httpx
import pytest

from codat_sandbox.codat_types import DATA_TYPE_SOURCE
from tests.fixtures_receiver import Receiver
from tests.fixtures_sandbox import SANDBOX_NOW_ISO

SECRET = "whsec_" + base64.b64encode(b"sandbox-scheduler-secret-for-tests").decode()
DAY = 86_400
FAILED = {"FetchError", "RateLimitError", "InternalError"}


@pytest.fixture
def http(sandbox_http: httpx.Client, receiver: Receiver) -> httpx.Client:
    """The reset sandbox sending every event to the receiver, signed with SECRET."""
    sandbox_http.post("/_sandbox/webhooks", json={"url": receiver.url, "secret": SECRET}).raise_for_status()
    return sandbox_http


def drain(http: httpx.Client) -> None:
    response = http.post("/_sandbox/webhooks/drain", json={"timeout": 20})
    assert response.status_code == 200, response.text


def companies(http: httpx.Client) -> list[dict]:
    return http.get("/companies", params={"pageSize": 100}).json()["results"]


def pulls_since(http: httpx.Client, company_id: str, since: str = SANDBOX_NOW_ISO) -> list[dict]:
    response = http.get(
        f"/companies/{company_id}/data/history", params={"pageSize": 5000, "query": f"requested>{since}"}
    )
    assert response.status_code == 200, response.text
    return response.json()["results"]


def enabled_types(http: httpx.Client, company_id: str) -> dict[str, int]:
    settings = http.get(f"/companies/{company_id}/syncSettings").json()["settings"]
    return {s["dataType"]: s["syncSchedule"] for s in settings if s.get("syncSchedule", 0) > 0}


def advance(http: httpx.Client, seconds: int) -> None:
    http.post("/_sandbox/clock/advance", json={"seconds": seconds}).raise_for_status()


def test_a_day_runs_each_linked_connections_due_syncs_and_tells_each_round_once(http, receiver):
    assert http.post("/_sandbox/scheduler", json={"enabled": True, "failure_rate": 0}).json() == {
        "enabled": True,
        "failure_rate": 0.0,
    }
    before = companies(http)
    advance(http, DAY)
    drain(http)
    events = receiver.verified(SECRET)
    assert {e["eventType"] for e in events} <= {"read.completed", "read.completed.initial"}
    by_connection = defaultdict(list)
    for event in events:
        [connection_id] = {entry["connectionId"] for entry in event["payload"]["dataTypes"]}
        by_connection[connection_id].append(event)
    after = {c["id"]: c for c in companies(http)}
    linked_with_types = 0
    for company in before:
        schedules = enabled_types(http, company["id"])
        pulled = defaultdict(set)
        for pull in pulls_since(http, company["id"]):
            assert pull["status"] == "Complete" and pull["isCompleted"]
            assert SANDBOX_NOW_ISO < pull["requested"] < pull["completed"] <= "2026-11-02T12:00:00Z"
            pulled[pull["connectionId"]].add(pull["dataType"])
        now_connections = {n["id"]: n for n in after[company["id"]]["dataConnections"]}
        for conn in company["dataConnections"]:
            mine = {t for t, hours in schedules.items() if DATA_TYPE_SOURCE[t] == conn["sourceType"]}
            daily = {t for t in mine if schedules[t] <= 24}
            if conn["status"] != "Linked" or not mine:
                assert conn["id"] not in pulled and conn["id"] not in by_connection
                assert now_connections[conn["id"]]["lastSync"] == conn["lastSync"]
                continue
            linked_with_types += 1
            assert daily <= pulled[conn["id"]] <= mine, conn["sourceType"]
            [event] = by_connection[conn["id"]]  # one round a day: every period is whole days
            payload = event["payload"]
            assert {d["dataType"] for d in payload["dataTypes"]} == pulled[conn["id"]]
            assert all(d["status"] == "Complete" and d["issues"] == [] for d in payload["dataTypes"])
            assert payload["referenceCompany"]["id"] == company["id"]
            assert payload["modifiedFromDate"] == conn["lastSync"]
            expected_type = "read.completed" if conn["lastSync"] else "read.completed.initial"
            assert event["eventType"] == expected_type
            synced = now_connections[conn["id"]]["lastSync"]
            assert event["generatedDate"] == synced and synced > SANDBOX_NOW_ISO
        assert after[company["id"]]["lastSync"] == max(
            filter(None, (n["lastSync"] for n in now_connections.values())), default=None
        )
    assert linked_with_types == len(by_connection) > 10


def test_with_failure_rate_one_every_pull_fails_and_last_sync_stays(http, receiver):
    http.post("/_sandbox/scheduler", json={"enabled": True, "failure_rate": 1.0}).raise_for_status()
    before = companies(http)
    advance(http, DAY)
    drain(http)
    statuses = {p["status"] for c in before for p in pulls_since(http, c["id"])}
    assert statuses and statuses <= FAILED
    entries = [d for e in receiver.verified(SECRET) for d in e["payload"]["dataTypes"]]
    assert entries and all(
        d["status"] in FAILED and d["issues"] and not d["recordsModified"] for d in entries
    )
    assert [c["lastSync"] for c in companies(http)] == [c["lastSync"] for c in before]


def test_the_scheduler_is_off_by_default(http, receiver):
    assert http.get("/_sandbox/scheduler").json() == {"enabled": False, "failure_rate": 0.02}
    before = companies(http)
    advance(http, 2 * DAY)
    drain(http)
    assert not any(pulls_since(http, c["id"]) for c in before[:5])
    assert receiver.received == []


def test_a_first_link_is_told_as_read_completed_initial_when_its_pulls_finish(http, receiver):
    company = http.post("/companies", json={"name": "New Ltd"}).json()
    bank = http.post(f"/companies/{company['id']}/connections", json={"platformKey": "upvr"}).json()
    http.post(f"/_sandbox/connections/{bank['id']}/reconnect").raise_for_status()
    advance(http, 120)
    drain(http)
    reads = [e for e in receiver.verified(SECRET) if e["eventType"].startswith("read.")]
    [event] = reads
    first_link = {
        t for t, _ in enabled_types(http, company["id"]).items() if DATA_TYPE_SOURCE[t] == "Banking"
    }
    assert event["eventType"] == "read.completed.initial" and event["payload"]["modifiedFromDate"] is None
    assert {d["dataType"] for d in event["payload"]["dataTypes"]} <= first_link
    assert {d["connectionId"] for d in event["payload"]["dataTypes"]} == {bank["id"]}


def test_a_portal_edit_of_sync_settings_sends_nothing(http, receiver):
    company = companies(http)[0]
    body = {
        "companyId": company["id"],
        "overridesDefaults": True,
        "settings": [{"dataType": "invoices", "fetchOnFirstLink": True, "syncSchedule": 24, "syncOrder": 0}],
    }
    assert http.post(f"/_sandbox/companies/{company['id']}/syncSettings", json=body).status_code == 204
    assert http.get(f"/companies/{company['id']}/syncSettings").json()["settings"] == body["settings"]
    drain(http)
    assert receiver.received == []
    bad = http.post(f"/_sandbox/companies/{company['id']}/syncSettings", json={"settings": "x"})
    assert bad.status_code == 400


def test_a_rogue_pull_is_stored_moves_last_sync_and_is_reported(http, receiver):
    company, conn = next(
        (c, n)
        for c in companies(http)
        for n in c["dataConnections"]
        if n["sourceType"] == "Accounting" and n["status"] == "Linked"
    )
    advance(http, 3600)
    response = http.post(
        f"/_sandbox/companies/{company['id']}/pulls",
        json={"dataType": "journals", "connectionId": conn["id"]},
    )
    assert response.status_code == 200, response.text
    pull = response.json()
    assert (pull["dataType"], pull["status"], pull["connectionId"]) == ("journals", "Complete", conn["id"])
    assert pull["requested"] == pull["completed"] == "2026-11-01T13:00:00Z"
    assert [p["id"] for p in pulls_since(http, company["id"])] == [pull["id"]]
    assert (
        http.get(f"/companies/{company['id']}/connections/{conn['id']}").json()["lastSync"]
        == pull["completed"]
    )
    drain(http)
    [event] = receiver.verified(SECRET)
    assert event["eventType"] == "read.completed" and event["generatedDate"] == pull["completed"]
    assert event["payload"]["dataTypes"] == [
        {
            "connectionId": conn["id"],
            "dataType": "journals",
            "recordsModified": True,
            "status": "Complete",
            "issues": [],
        }
    ]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/_sandbox/scheduler", {"failure_rate": 2}, "failure_rate"),
        ("/_sandbox/scheduler", {"enabled": "yes"}, "enabled"),
        ("/_sandbox/scheduler", {"speed": 1}, "speed"),
        ("/_sandbox/companies/{company}/pulls", {"connectionId": "x"}, "dataType"),
        ("/_sandbox/companies/{company}/pulls", {"dataType": "invoices"}, "connectionId"),
    ],
)
def test_bad_scheduler_and_pull_bodies_are_400s_naming_the_field(http, path, body, field):
    company = companies(http)[0]["id"]
    response = http.post(path.format(company=company), json=body)
    assert response.status_code == 400 and field in response.json()["error"]
    unknown = http.post(
        "/_sandbox/companies/00000000-0000-4000-8000-000000000000/pulls",
        json={"dataType": "invoices", "connectionId": "x"},
    )
    assert unknown.status_code == 404


def test_scheduled_rounds_go_through_tag_filters_and_delivery_faults(sandbox_http, receiver):
    created = sandbox_http.post(
        "/webhooks",
        json={"url": receiver.url, "eventTypes": ["read.completed"], "companyTags": ["region:uk"]},
    ).json()
    sandbox_http.post(
        f"/_sandbox/webhooks/{created['id']}/secret", json={"secret": SECRET}
    ).raise_for_status()
    sandbox_http.post("/_sandbox/faults", json={"webhook_duplicate": 1.0}).raise_for_status()
    sandbox_http.post("/_sandbox/scheduler", json={"enabled": True}).raise_for_status()
    uk = {c["id"] for c in companies(sandbox_http) if c["tags"].get("region") == "uk"}
    advance(sandbox_http, DAY)
    drain(sandbox_http)
    events = receiver.verified(SECRET)
    assert events and {e["payload"]["referenceCompany"]["id"] for e in events} <= uk
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 2 * len(set(ids))  # every delivery twice, with its webhook-id


def test_a_three_day_advance_runs_three_daily_rounds_each_from_the_one_before(http, receiver):
    http.post("/_sandbox/scheduler", json={"enabled": True, "failure_rate": 0}).raise_for_status()
    advance(http, 3 * DAY)
    drain(http)
    rounds = defaultdict(list)
    for event in receiver.verified(SECRET):
        rounds[event["payload"]["dataTypes"][0]["connectionId"]].append(event)
    assert rounds
    for events in rounds.values():
        events.sort(key=lambda e: e["generatedDate"])
        assert len(events) == 3
        assert [e["payload"]["modifiedFromDate"] for e in events[1:]] == [
            e["generatedDate"] for e in events[:2]
        ]
        assert all(e["eventType"] == "read.completed" for e in events[1:])


def test_the_scheduler_setting_of_the_config_must_be_a_bool():
    from codat_sandbox import SandboxConfig

    with pytest.raises(ValueError, match="sync_scheduler"):
        SandboxConfig(api_key="k", sync_scheduler="yes")  # type: ignore[arg-type]
