"""The Consent API over real HTTP (uvicorn on loopback) on SQLite and PostgreSQL: the seed's scenarios as a
product's backend makes them, with the ledger's history as proof, and every refusal writing nothing."""

from __future__ import annotations

import pytest

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import utcnow
from tests.fixtures_api import (
    ACME,
    ACME_BANK,
    ACME_BOOKS,
    ACME_SECOND_BANK,
    GLOBEX,
    GLOBEX_BOOKS,
    UNKNOWN,
    world,
)

CATALOG = load_catalog()
LENDING_ONLY = {"balanceSheet", "profitAndLoss", "cashFlowStatement", "banking-accounts", "banking-transactions"}


def test_s1_s2_a_first_consent_then_another_product_without_reauthorizing(api):
    with api.client("dashboard-app") as dashboard, api.client("lending-app") as lending:
        first = dashboard.post(f"/v1/companies/{ACME}/consents/dashboard")
        assert first.status_code == 201, first.text
        assert first.json()["connections"] == [ACME_BOOKS]  # the accounting connection carries its types
        assert set(first.json()["data_types"]) == set(CATALOG.product("dashboard").required)
        second = lending.post(f"/v1/companies/{ACME}/consents/lending", json={"wording_version": "lending-v3"})
        assert second.status_code == 201, second.text
        assert set(second.json()["connections"]) == {ACME_BOOKS, ACME_BANK}
        shown = api.client("admin").get(f"/v1/companies/{ACME}/consents").json()
    assert [c["product"] for c in shown["consents"]] == ["dashboard", "lending"]
    invoices = next(e for e in shown["entitlements"] if e["data_type"] == "invoices")
    assert invoices["products"] == ["dashboard", "lending"]
    history = api.ledger.history(ACME)
    assert [(e["product"], e["event_type"], e["actor"], e["channel"]) for e in history] == [
        ("dashboard", "granted", "dashboard-app", "api"), ("lending", "granted", "lending-app", "api"),
    ]
    assert history[1]["wording_version"] == "lending-v3"


def test_s3_s4_connect_another_package_and_share_more_data_types(api):
    with api.client("lending-app") as lending:
        assert lending.post(f"/v1/companies/{ACME}/consents/lending").status_code == 201
        api.observe(world(utcnow(), second_bank=True))  # the customer linked a second bank
        more = lending.post(f"/v1/companies/{ACME}/consents/lending/extend", json={"connections": [ACME_SECOND_BANK]})
        assert more.status_code == 200, more.text
        assert ACME_SECOND_BANK in more.json()["connections"]
        extra = lending.post(
            f"/v1/companies/{ACME}/consents/lending/extend", json={"data_types": ["accountTransactions"]}
        )
        assert extra.status_code == 200 and "accountTransactions" in extra.json()["data_types"]
    events = api.ledger.history(ACME)
    assert [e["event_type"] for e in events] == ["granted", "extended", "extended"]
    assert events[1]["connection_ids"] == [ACME_SECOND_BANK] and events[2]["data_types"] == ["accountTransactions"]


def test_s5_revoke_one_use_case_after_seeing_its_impact_on_the_other(api):
    with api.client("admin") as admin:
        for product in ("dashboard", "lending"):
            assert admin.post(f"/v1/companies/{ACME}/consents/{product}").status_code == 201
    with api.client("lending-app") as lending:
        preview = lending.get(f"/v1/companies/{ACME}/consents/lending/impact")
        assert preview.status_code == 200, preview.text
        deleted = {d["data_type"] for d in preview.json()["delete"]}
        kept = {k["data_type"]: k["needed_by"] for k in preview.json()["keep"]}
        assert LENDING_ONLY <= deleted and kept["invoices"] == ["dashboard"]
        done = lending.post(f"/v1/companies/{ACME}/consents/lending/revoke", json={"reason": "loan repaid"})
        assert done.status_code == 200, done.text
    assert {d["data_type"] for d in done.json()["delete"]} == deleted
    assert done.json()["keep"] == preview.json()["keep"]
    last = api.ledger.history(ACME)[-1]
    assert (last["event_type"], last["reason"], last["actor"], last["channel"]) == (
        "revoked", "loan repaid", "lending-app", "api"
    )
    # the dashboard still reads invoices; lending's own read of the consents shows it revoked
    with api.client("lending-app") as lending:
        mine = lending.get(f"/v1/companies/{ACME}/consents").json()
    assert [(c["product"], c["status"]) for c in mine["consents"]] == [("lending", "revoked")]
    assert mine["entitlements"] == []


def test_s6_reconfirm_restarts_the_open_banking_clock_and_disconnect_removes_a_connection(api):
    with api.client("admin") as admin:
        assert admin.post(f"/v1/companies/{ACME}/consents/lending").status_code == 201
        again = admin.post(f"/v1/companies/{ACME}/consents/lending/reconfirm")
        assert again.status_code == 200, again.text
        gone = admin.post(f"/v1/companies/{ACME}/connections/{ACME_BANK}/disconnect", json={"reason": "closed"})
        assert gone.status_code == 200, gone.text
        assert gone.json()["connection_id"] == ACME_BANK
    assert [e["event_type"] for e in api.ledger.history(ACME)] == ["granted", "reconfirmed", "disconnected"]


def test_history_and_as_of_read_the_past(api):
    with api.client("admin") as admin:
        granted = admin.post(f"/v1/companies/{ACME}/consents/dashboard").json()
        admin.post(f"/v1/companies/{ACME}/consents/dashboard/revoke")
        before = admin.get(f"/v1/companies/{ACME}/consents", params={"as_of": granted["granted_at"]}).json()
        now = admin.get(f"/v1/companies/{ACME}/consents").json()
        history = admin.get(f"/v1/companies/{ACME}/history").json()
    assert before["as_of"] == granted["granted_at"] and before["consents"][0]["status"] == "active"
    assert now["consents"][0]["status"] == "revoked"
    assert [e["event_type"] for e in history] == ["granted", "revoked"]


def _refused(api, key, method, path, status, *needles, **kwargs):
    before = api.counts()
    with api.client(key) as client:
        response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    for needle in needles:
        assert needle in body["detail"], body
    assert api.counts() == before, "a refused request wrote something"
    return body


def test_refusals_answer_the_right_status_name_the_value_and_write_nothing(api):
    grant = f"/v1/companies/{ACME}/consents/lending"
    _refused(api, "admin", "POST", grant, 422, "'invoicez'", json={"data_types": ["invoicez"]})
    _refused(api, "admin", "POST", grant, 422, "colour", json={"colour": "red"})
    _refused(api, "admin", "POST", grant, 422, "wording_version", json={"wording_version": "v\x00"})
    _refused(api, "admin", "POST", grant, 422, "at", json={"at": "2026-01-01T00:00:00"})
    _refused(api, "admin", "POST", grant, 422, "in the future", json={"at": "2099-01-01T00:00:00Z"})
    _refused(api, "admin", "POST", f"/v1/companies/{ACME}/consents/mortgages", 404, "mortgages")
    _refused(api, "admin", "POST", f"/v1/companies/{UNKNOWN}/consents/lending", 404, UNKNOWN)
    _refused(api, "admin", "GET", "/v1/companies/not-a-company/consents", 422, "not a uuid", "not-a-company")
    _refused(api, "lending-app", "POST", f"/v1/companies/{ACME}/consents/dashboard", 403, "lending-app")
    _refused(api, "lending-app", "POST", f"/v1/companies/{ACME}/holds", 403, json={"reason": "litigation"})
    _refused(api, None, "POST", grant, 401, "Bearer")
    with api.client("admin") as admin:
        assert admin.post(grant).status_code == 201
    _refused(api, "admin", "POST", grant, 409, "already granted")
    _refused(api, "admin", "POST", f"/v1/companies/{ACME}/consents/dashboard/revoke", 409, "never granted")
    _refused(api, "admin", "POST", f"/v1/companies/{ACME}/connections/{GLOBEX_BOOKS}/disconnect", 404, GLOBEX_BOOKS)


def test_a_revoked_key_is_refused_at_once(api):
    from consent_lifecycle.api.keys import revoke_key

    revoke_key(api.engine, "lending-app", now=utcnow())
    body = _refused(api, "lending-app", "POST", f"/v1/companies/{ACME}/consents/lending", 401, "revoked")
    assert api.keys["lending-app"] not in str(body)


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(api):
    path = f"/v1/companies/{ACME}/consents/lending"
    with api.client("lending-app") as lending:
        first = lending.post(path, json={"wording_version": "v1"}, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 201
        counts = api.counts()
        replay = lending.post(path, json={"wording_version": "v1"}, headers={"Idempotency-Key": "k-1"})
        assert (replay.status_code, replay.json()) == (201, first.json())
        assert replay.headers["idempotent-replayed"] == "true"
        assert api.counts() == counts
    _refused(api, "lending-app", "POST", path, 422, "k-1", "different request",
             json={"wording_version": "v2"}, headers={"Idempotency-Key": "k-1"})
    # a refused request keeps no key: the corrected retry under the same key is answered afresh
    revoke = f"{path}/revoke"
    _refused(api, "lending-app", "POST", revoke, 422, "reason", json={"reason": ""}, headers={"Idempotency-Key": "k-2"})
    with api.client("lending-app") as lending:
        assert lending.post(revoke, json={"reason": "done"}, headers={"Idempotency-Key": "k-2"}).status_code == 200


def test_legal_holds_through_an_admin_key(api):
    with api.client("admin") as admin:
        placed = admin.post(f"/v1/companies/{GLOBEX}/holds", json={"reason": "litigation", "data_type": "invoices"})
        assert placed.status_code == 201, placed.text
        hold = placed.json()
        assert (hold["placed_by"], hold["data_type"]) == ("admin", "invoices")
        assert [h["hold_id"] for h in admin.get(f"/v1/companies/{GLOBEX}/holds").json()] == [hold["hold_id"]]
        released = admin.post(f"/v1/holds/{hold['hold_id']}/release")
        assert released.status_code == 200 and released.json()["released_at"]
        again = admin.post(f"/v1/holds/{hold['hold_id']}/release")
        assert again.status_code == 409


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_the_api_describes_itself(api, path):
    with api.client(None) as anonymous:
        assert anonymous.get(path).status_code == 200
