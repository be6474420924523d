"""The journey's pages over real HTTP (uvicorn on loopback) on SQLite and PostgreSQL: links open only their
own company's pages, a form without its cookie and token writes nothing, refusals are readable pages, and
`POST .../journey-links` makes links a product's key may make."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest

from consent_lifecycle.api import create_app
from consent_lifecycle.clock import parse_iso, utcnow
from consent_lifecycle.settings import Settings
from tests.fixtures_api import ACME, GLOBEX, UNKNOWN, serve_app
from tests.fixtures_journey import EXISTING, NAMES, NEW, OTHER, XERO

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def fields(html: str) -> dict[str, list[str]]:
    """The hidden fields of the page's first form."""
    form = html[html.index("<form"):html.index("</form>")]
    found: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form):
        found.setdefault(name, []).append(value)
    return found


def test_a_link_opens_its_company_and_no_other(journey):
    with httpx.Client() as client:
        own = client.get(journey.link(EXISTING))
        assert own.status_code == 200 and NAMES[EXISTING] in own.text and "Business dashboard" in own.text
        assert own.headers["referrer-policy"] == "no-referrer" and own.headers["cache-control"] == "no-store"
        cookie = own.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/journey" in cookie

        for url in (journey.link(EXISTING, on=OTHER), journey.link(EXISTING, "lending", on=OTHER)):
            crossed = client.get(url)
            assert crossed.status_code == 403 and "made for another business" in crossed.text
            for company_id in (EXISTING, OTHER):  # nothing of either company
                assert NAMES[company_id] not in crossed.text and company_id not in crossed.text
            assert XERO[EXISTING] not in crossed.text and XERO[OTHER] not in crossed.text


def test_expired_tampered_and_missing_links_are_refused(journey):
    expired = journey.link(NEW, now=utcnow() - timedelta(days=8))
    token = journey.link(NEW).split("token=")[1]
    tampered = journey.link(NEW).split("token=")[0] + "token=" + token[:-3] + ("abc" if token[-3:] != "abc" else "xyz")
    with httpx.Client() as client:
        for url, says in ((expired, "expired on"), (tampered, "altered"), (journey.link(NEW).split("?")[0], "incomplete")):
            answer = client.get(url)
            assert answer.status_code == 403 and says in answer.text and NAMES[NEW] not in answer.text


def test_a_product_link_opens_only_that_products_confirmation(journey):
    lending = journey.link(NEW, "lending")
    with httpx.Client() as client:
        assert client.get(lending).status_code == 200
        token = lending.split("token=")[1]
        for path in (f"/journey/companies/{NEW}", f"/journey/companies/{NEW}/consents/dashboard",
                     f"/journey/companies/{NEW}/consents/lending/revoke"):
            refused = client.get(f"{journey.base_url}{path}?token={token}")
            assert refused.status_code == 403 and "one product" in refused.text


def test_a_form_without_its_cookie_or_token_writes_nothing(journey):
    url = journey.link(NEW, "lending")
    with httpx.Client() as client:
        form = fields(client.get(url).text)
        assert form["action"] == ["grant"] and "balanceSheet" in form["data_type"]
        target = url.split("?")[0]
        no_cookie = httpx.post(target, data=form)  # another browser: no cookie
        other_link = client.post(target, data={**form, "token": journey.link(NEW).split("token=")[1]})
        forged = client.post(target, data={**form, "csrf": "0" * 64})
        missing = client.post(target, data={k: v for k, v in form.items() if k != "csrf"})
        as_json = client.post(target, json=form)
        for answer in (no_cookie, other_link, forged, missing, as_json):
            assert answer.status_code == 403, answer.text
        assert "could not be verified" in forged.text
        assert journey.history(NEW) == []

        done = client.post(target, data=form)
        assert done.status_code == 303 and "done=granted" in done.headers["location"]
    assert journey.ui_events(NEW) == [("lending", "granted")]
    event = journey.history(NEW)[0]
    assert (event["actor"], event["wording_version"]) == ("customer", "catalog-1")
    assert set(event["data_types"]) == set(journey.catalog.product("lending").required)


def test_a_form_from_one_company_cannot_act_on_another(journey):
    with httpx.Client() as client:
        url = journey.link(EXISTING).replace("?", "/consents/lending?")  # a page with a form
        page = client.get(url)
        token = url.split("token=")[1]
        csrf = CSRF.search(page.text).group(1)
        for path in (f"/journey/companies/{OTHER}/consents/dashboard",
                     f"/journey/companies/{OTHER}/consents/dashboard/revoke"):
            answer = client.post(journey.base_url + path, data={"token": token, "csrf": csrf, "action": "grant",
                                                                "wording_version": "catalog-1"})
            assert answer.status_code == 403 and NAMES[OTHER] not in answer.text
    assert journey.history(OTHER) == []


def test_ledger_refusals_and_unknowns_are_pages_not_errors(journey):
    with httpx.Client() as client:
        not_granted = client.get(journey.link(NEW).replace("?", "/consents/lending/revoke?"))
        assert not_granted.status_code == 409 and "text/html" in not_granted.headers["content-type"]
        assert "lending" in not_granted.text
        unknown_product = client.get(journey.link(NEW).replace("?", "/consents/payroll/revoke?"))
        assert unknown_product.status_code == 404 and "unknown product &#39;payroll&#39;" in unknown_product.text
        unknown_company = client.get(journey.link(UNKNOWN))
        assert unknown_company.status_code == 404 and "no record of this business" in unknown_company.text

        # a wording that changed between reading and confirming is not what the customer agreed to
        url = journey.link(NEW, "lending")
        form = fields(client.get(url).text)
        stale = client.post(url.split("?")[0], data={**form, "wording_version": "catalog-0"})
        assert stale.status_code == 409 and "has changed" in stale.text
        # the same confirmation twice (a double click) records it once and says it is done
        assert client.post(url.split("?")[0], data=form).status_code == 303
        again = client.post(url.split("?")[0], data=form)
        assert again.status_code == 303 and "done=granted" in again.headers["location"]
        # a grant form whose scope the consent does not cover is refused by the ledger, as a page
        wider = {**form, "data_type": [*form["data_type"], "payments"]}
        refused = client.post(url.split("?")[0], data=wider)
        assert refused.status_code == 409 and "already" in refused.text and "lending" in refused.text
        # revoking twice: once
        manage = journey.link(NEW)
        revoke = manage.replace("?", "/consents/lending/revoke?")
        form = fields(client.get(revoke).text)
        for _ in range(2):
            answer = client.post(revoke.split("?")[0], data={**form, "reason": "no longer needed"})
            assert answer.status_code == 303 and "done=revoked" in answer.headers["location"]
    assert journey.ui_events(NEW) == [("lending", "granted"), ("lending", "revoked")]


def test_nothing_new_to_confirm_has_no_button(journey):
    optional = sorted(journey.catalog.product("dashboard").optional)
    journey.ledger.extend(EXISTING, "dashboard", data_types=optional, actor="seed", channel="cli", at=utcnow())
    with httpx.Client() as client:
        page = client.get(journey.link(EXISTING, "dashboard"))
    assert page.status_code == 200 and "already share everything" in page.text and "<button" not in page.text


@pytest.mark.parametrize(
    ("key", "body", "status"),
    [
        ("lending-app", {"product": "lending"}, 201),
        ("lending-app", {}, 201),
        ("lending-app", {"product": "dashboard"}, 403),
        ("admin", {"product": "dashboard", "ttl_seconds": 3600}, 201),
        ("admin", {"product": "payroll"}, 404),
        ("admin", {"ttl_seconds": 10}, 422),
        ("admin", {"colour": "red"}, 422),
        (None, {}, 401),
    ],
)
def test_a_product_makes_the_link_it_sends_its_customer(api, key, body, status):
    with api.client(key) as client:
        answer = client.post(f"/v1/companies/{ACME}/journey-links", json=body)
    assert answer.status_code == status, answer.text
    if status != 201:
        assert answer.headers["content-type"] == "application/problem+json"
        return
    made = answer.json()
    assert made["url"].startswith(f"{api.url}/journey/companies/{ACME}")
    lifetime = timedelta(seconds=body.get("ttl_seconds", 7 * 86400))
    expires = made["expires_at"]
    assert expires.endswith("Z") and abs((utcnow() + lifetime - parse_iso(expires)).total_seconds()) < 60
    page = httpx.get(made["url"])
    assert page.status_code == 200 and "Acme Ltd" in page.text and "Globex" not in page.text
    crossed = httpx.get(made["url"].replace(ACME, GLOBEX))
    assert crossed.status_code == 403 and "Globex" not in crossed.text and "Acme" not in crossed.text


def test_a_link_for_an_unknown_company_is_not_made(api):
    with api.client("admin") as client:
        answer = client.post(f"/v1/companies/{UNKNOWN}/journey-links", json={})
    assert answer.status_code == 404 and UNKNOWN in answer.json()["detail"]


def test_links_are_made_on_the_public_base_url_when_one_is_set(api):
    app = create_app(api.engine, api.catalog, settings=Settings(journey_base_url="https://consent.example.com/"))
    admin = {"Authorization": f"Bearer {api.keys['admin']}"}
    with serve_app(app) as url, httpx.Client(base_url=url, headers=admin) as client:
        made = client.post(f"/v1/companies/{ACME}/journey-links", json={"product": "lending"}).json()
    assert made["url"].startswith(f"https://consent.example.com/journey/companies/{ACME}/consents/lending?token=")
