"""Access checks and read records through the API (real HTTP, SQLite and PostgreSQL): a product asks before
each read and gets yes or no with the reason; the batch answers in order what the single check answers;
reads are recorded once per Idempotency-Key; refusals write nothing."""

from __future__ import annotations

from sqlalchemy import select

from consent_lifecycle.db.models import AccessRecord
from tests.fixtures_api import ACME, ACME_BANK, ACME_BOOKS, GLOBEX, GLOBEX_BOOKS, GLOBEX_OLD_BANK
from tests.test_api_consents import _refused


def _check(client, company, connection, data_type, product="lending", **extra):
    response = client.post("/v1/access/check", json={
        "company_id": company, "product": product, "connection_id": connection, "data_type": data_type, **extra,
    })
    assert response.status_code == 200, response.text
    return response.json()


def test_a_product_asks_before_reading_and_is_told_why_not(api):
    with api.client("lending-app") as lending:
        before = _check(lending, ACME, ACME_BANK, "banking-transactions")
        assert (before["permitted"], before["reason"]) == (False, "no_consent")
        assert "never granted lending" in before["message"]
        assert lending.post(f"/v1/companies/{ACME}/consents/lending").status_code == 201
        assert _check(lending, ACME, ACME_BANK, "banking-transactions")["reason"] == "permitted"
        assert _check(lending, ACME, ACME_BOOKS, "banking-transactions")["reason"] == "data_type_not_on_connection"
        assert _check(lending, ACME, ACME_BANK, "commerce-orders")["reason"] == "data_type_not_consented"
        assert _check(lending, ACME, GLOBEX_BOOKS, "invoices")["reason"] == "connection_not_of_company"
        lending.post(f"/v1/companies/{ACME}/consents/lending/revoke")
        assert _check(lending, ACME, ACME_BANK, "banking-transactions")["reason"] == "consent_revoked"


def test_s6_an_expired_open_banking_connection_is_refused_until_the_customer_reconfirms(api):
    with api.client("lending-app") as lending:
        assert lending.post(f"/v1/companies/{GLOBEX}/consents/lending").status_code == 201
        expired = _check(lending, GLOBEX, GLOBEX_OLD_BANK, "banking-transactions")
        assert (expired["permitted"], expired["reason"]) == (False, "connection_expired")
        assert lending.post(f"/v1/companies/{GLOBEX}/consents/lending/reconfirm").status_code == 200
        assert _check(lending, GLOBEX, GLOBEX_OLD_BANK, "banking-transactions")["permitted"] is True
        # as it stood a day ago, before the grant: the ledger is replayed
        past = _check(lending, GLOBEX, GLOBEX_OLD_BANK, "banking-transactions", at=_day_before(api, GLOBEX))
        assert (past["permitted"], past["reason"]) == (False, "no_consent")


def _day_before(api, company):
    from datetime import timedelta

    from consent_lifecycle.clock import iso, parse_iso

    return iso(parse_iso(api.ledger.history(company)[0]["at"]) - timedelta(days=1))


def test_the_batch_answers_in_order_what_single_checks_answer(api):
    with api.client("admin") as admin:
        admin.post(f"/v1/companies/{ACME}/consents/dashboard")
        asks = [
            {"company_id": company, "product": product, "connection_id": connection, "data_type": data_type}
            for company, connection in [(ACME, ACME_BOOKS), (ACME, ACME_BANK), (GLOBEX, GLOBEX_BOOKS)]
            for product in ("dashboard", "lending")
            for data_type in ("invoices", "banking-transactions", "balanceSheet")
        ]
        batch = admin.post("/v1/access/checks", json={"checks": asks})
        assert batch.status_code == 200, batch.text
        singles = [_check(admin, a["company_id"], a["connection_id"], a["data_type"], a["product"]) for a in asks]
    results = batch.json()["results"]
    assert [(r["company_id"], r["product"], r["data_type"]) for r in results] == [
        (a["company_id"], a["product"], a["data_type"]) for a in asks
    ]
    assert [(r["permitted"], r["reason"]) for r in results] == [(s["permitted"], s["reason"]) for s in singles]
    assert sum(r["permitted"] for r in results) == 1  # dashboard's invoices on ACME's books


def test_access_refusals_name_the_value_and_write_nothing(api):
    ask = {"company_id": ACME, "product": "lending", "connection_id": ACME_BANK, "data_type": "invoices"}
    _refused(api, "dashboard-app", "POST", "/v1/access/check", 403, "dashboard-app", json=ask)
    _refused(api, "admin", "POST", "/v1/access/check", 404, "mortgages", json={**ask, "product": "mortgages"})
    _refused(api, "admin", "POST", "/v1/access/check", 422, "invoicez", json={**ask, "data_type": "invoicez"})
    _refused(api, "admin", "POST", "/v1/access/checks", 422, "checks[1]",
             json={"checks": [ask, {**ask, "data_type": "invoicez"}]})
    _refused(api, "dashboard-app", "POST", "/v1/access/checks", 403, "checks[0]", json={"checks": [ask]})
    _refused(api, "admin", "POST", "/v1/access/records", 422, "records[1]", "invoicez",
             json={"records": [ask, {**ask, "data_type": "invoicez"}]})
    _refused(api, None, "POST", "/v1/access/check", 401, json=ask)


def test_reads_are_recorded_once_per_idempotency_key(api):
    read = {"company_id": ACME, "product": "lending", "connection_id": ACME_BANK, "data_type": "invoices",
            "at": "2026-12-01T10:00:00Z"}
    with api.client("lending-app") as lending:
        one = lending.post("/v1/access/record", json=read, headers={"Idempotency-Key": "read-1"})
        assert one.status_code == 201, one.text
        again = lending.post("/v1/access/record", json=read, headers={"Idempotency-Key": "read-1"})
        assert again.json() == one.json()
        many = lending.post("/v1/access/records", json={"records": [read, {**read, "data_type": "bills"}]})
        assert many.status_code == 201 and len(many.json()["records"]) == 2
    with api.engine.connect() as db:
        rows = db.execute(select(AccessRecord.product, AccessRecord.data_type).order_by(AccessRecord.id)).all()
    assert [tuple(r) for r in rows] == [("lending", "invoices"), ("lending", "invoices"), ("lending", "bills")]
    assert one.json()["id"] != many.json()["records"][0]["id"]
