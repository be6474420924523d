"""The hosted consent journey in a real browser: Chromium (Debian's) clicks through the seed's scenarios on a
real server over SQLite and PostgreSQL, and the ledger's history shows each event with channel `ui`;
expired, tampered and cross-company links are refused in the browser too."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from consent_lifecycle.clock import utcnow
from tests.fixtures_journey import BARCLAYS, EXISTING, EXPIRED, HSBC, NAMES, NEW, OTHER, XERO

pytestmark = pytest.mark.browser
WHO = {"actor": "product-backend", "channel": "cli"}


def grant_lending(journey, company_id):
    journey.ledger.grant(company_id, "lending", wording_version="catalog-1", at=journey.seeded_at, **WHO)


def test_s1_a_new_customer_confirms_their_first_consent(journey, page):
    answer = page.goto(journey.link(NEW, "lending"))
    assert answer.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Share data with Lending origination")
    types = page.locator("#data-types")
    expect(types).to_contain_text("Balance sheets")
    expect(types).to_contain_text("your assets, liabilities and equity at the end of each period")
    expect(types).to_contain_text("Bank transactions")
    expect(page.locator("#connections")).to_contain_text("Xero")
    expect(page.locator("#connections")).to_contain_text("Barclays")
    expect(page.locator("#wording")).to_have_text("catalog-1")

    page.get_by_label("Bank balances: how much is in each of your bank accounts").check()  # optional
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_have_text("Thank you: your consent is recorded.")
    expect(page.get_by_role("heading", name="What you already share with Lending origination")).to_be_visible()
    assert journey.ui_events(NEW) == [("lending", "granted")]
    event = journey.history(NEW)[0]
    assert set(event["connection_ids"]) == {XERO[NEW], BARCLAYS[NEW]} and event["wording_version"] == "catalog-1"
    lending = journey.catalog.product("lending")
    assert set(event["data_types"]) == lending.required | {"banking-accountBalances"}


def test_s2_an_existing_customer_shares_with_another_product_without_logging_in_again(journey, page):
    page.goto(journey.link(EXISTING))
    product = page.locator("#product-lending")
    expect(product.locator(".status")).to_have_text("not shared")
    product.get_by_role("link", name="Share data with Lending origination").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Share data with Lending origination")
    expect(page.get_by_text("You do not need to log in to any of these again.")).to_be_visible()
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_have_text("Thank you: your consent is recorded.")

    history = journey.history(EXISTING)
    assert [(e["product"], e["event_type"], e["channel"]) for e in history] == [
        ("dashboard", "granted", "cli"), ("lending", "granted", "ui"),
    ]
    assert XERO[EXISTING] in history[1]["connection_ids"]  # the connection the dashboard journey made


def test_s3_s4_a_customer_connects_another_package_and_shares_it(journey, page):
    grant_lending(journey, EXISTING)
    page.goto(journey.link(EXISTING))
    connect = page.get_by_role("link", name="Connect another package")
    expect(connect).to_have_attribute("href", f"https://link.codat.io/company/{EXISTING}")
    # ... the customer links HSBC at Codat's Link; the next listing sees it
    journey.link_connection(EXISTING, (HSBC[EXISTING], "HSBC", "Banking", "Linked", utcnow()))

    page.goto(journey.link(EXISTING, "lending"))
    expect(page.get_by_role("heading", level=2, name="From these connections")).to_be_visible()
    rows = page.locator("#connections tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("HSBC")
    expect(rows).to_contain_text("Bank transactions")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_have_text("Thank you: you now share the additional data.")

    extended = journey.history(EXISTING)[-1]
    assert (extended["product"], extended["event_type"], extended["channel"]) == ("lending", "extended", "ui")
    assert extended["connection_ids"] == [HSBC[EXISTING]]


def test_s5_a_customer_revokes_one_product_after_seeing_the_impact(journey, page):
    grant_lending(journey, EXISTING)
    page.goto(journey.link(EXISTING))
    page.get_by_role("link", name="Revoke Lending origination").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Stop sharing with Lending origination?")
    due = f"{utcnow() + timedelta(days=30):%Y-%m-%d}"
    impact = page.locator("#impact")
    expect(impact).to_contain_text(re.compile(
        r"Lending origination's balance sheets, cash flow statements, profit and loss statements, bank accounts "
        rf"and bank transactions are deleted after 30 days, on {due}"
    ))
    expect(impact).to_contain_text(re.compile(r"Business dashboard keeps using bank accounts in your books, .*invoices"))
    expect(impact).to_contain_text("No product will use your Barclays (Banking) connection any more.")
    assert journey.ui_events(EXISTING) == []  # asked again: nothing recorded yet

    page.get_by_label("Why are you stopping? (optional)").fill("We repaid the loan")
    page.get_by_role("button", name="Yes, stop sharing with Lending origination").click()
    expect(page.get_by_role("status")).to_have_text("Your consent is withdrawn. We stop using this data now.")
    expect(page.locator("#product-lending .status")).to_have_text("revoked")
    expect(page.locator("#product-dashboard .status")).to_have_text("active")

    revoked = journey.history(EXISTING)[-1]
    assert (revoked["product"], revoked["event_type"], revoked["channel"]) == ("lending", "revoked", "ui")
    assert revoked["reason"] == "We repaid the loan"


def test_s6_an_expired_open_banking_connection_is_reconfirmed_or_reconsented(journey, page):
    page.goto(journey.link(EXPIRED))
    barclays, hsbc = page.locator(f"#connection-{BARCLAYS[EXPIRED]}"), page.locator(f"#connection-{HSBC[EXPIRED]}")
    expect(barclays).to_contain_text("(expired)")
    expect(hsbc).to_contain_text("Deauthorized")
    for row, connection_id in ((barclays, BARCLAYS[EXPIRED]), (hsbc, HSBC[EXPIRED])):
        expect(row.get_by_role("link", name="Re-consent")).to_have_attribute(
            "href", f"https://link-api.codat.io/companies/{EXPIRED}/connections/{connection_id}/start"
        )
    expect(hsbc.get_by_role("button")).to_have_count(0)  # Deauthorized: only a new authorization renews it

    barclays.get_by_role("button", name="Reconfirm Barclays").click()
    expect(page.get_by_role("status")).to_have_text("Thank you: you reconfirmed your bank connection's consent.")
    renewed = page.locator(f"#connection-{BARCLAYS[EXPIRED]}")
    expect(renewed).not_to_contain_text("expired")
    expect(renewed).to_contain_text(f"{utcnow() + timedelta(days=90):%Y-%m-%d}")
    assert journey.ui_events(EXPIRED) == [("lending", "reconfirmed")]


@pytest.mark.parametrize("case", ["expired", "tampered", "other-company"])
def test_bad_links_are_refused_in_the_browser(journey, page, case):
    if case == "expired":
        url, says = journey.link(NEW, "lending", now=utcnow() - timedelta(days=8)), "expired on"
    elif case == "tampered":  # one character of the token changed
        url = journey.link(NEW, "lending")
        at = url.index("token=") + 16
        url, says = url[:at] + ("A" if url[at] != "A" else "B") + url[at + 1:], "altered"
    else:
        url, says = journey.link(NEW, on=OTHER), "made for another business"
    answer = page.goto(url)
    assert answer.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("This link cannot be used")
    expect(page.get_by_role("alert")).to_contain_text(says)
    for company_id in (NEW, OTHER):
        assert NAMES[company_id] not in page.content()
    expect(page.get_by_role("button")).to_have_count(0)
    assert journey.history(NEW) == []
