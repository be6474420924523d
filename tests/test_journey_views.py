"""What the journey's pages decide, without a server: what "Confirm" records, and a revocation in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from consent_lifecycle.api.journey.views import confirm_plan, impact_sentences, phrase, words_list
from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.ledger import ConsentView, Impact

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
BOOKS, BANK, NEW_BANK = "books", "bank", "new-bank"
CATALOG = load_catalog()


def connections(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"id": i, "source_type": s, "status": st, "deleted_at": pd.NaT} for i, s, st in rows],
        columns=["id", "source_type", "status", "deleted_at"],
    )


def consent(product: str, data_types: set[str], conns: set[str], status: str = "active") -> ConsentView:
    return ConsentView("c1", "co", product, status, tuple(sorted(data_types)), tuple(sorted(conns)), NOW, None, NOW)


def test_a_first_confirmation_grants_the_required_types_on_the_linked_connections_carrying_them():
    lending = CATALOG.product("lending")
    listed = connections((BOOKS, "Accounting", "Linked"), (BANK, "Banking", "Linked"), ("old", "Banking", "Unlinked"))
    plan = confirm_plan(lending, None, listed)
    assert plan.action == "grant" and set(plan.data_types) == lending.required
    assert plan.connections == (BANK, BOOKS)
    assert plan.data_types[0] == "balanceSheet"  # accounting first, as Codat lists them
    again = confirm_plan(lending, consent("lending", set(), set(), status="revoked"), listed)
    assert again.action == "grant"  # a revoked consent is granted anew


def test_without_a_linked_connection_there_is_nothing_to_confirm_yet():
    plan = confirm_plan(CATALOG.product("dashboard"), None, connections((BANK, "Banking", "Linked")))
    assert plan.action is None and plan.why == "first connect your accounting platform"


def test_an_active_consent_is_extended_by_what_is_new_only():
    lending = CATALOG.product("lending")
    listed = connections((BOOKS, "Accounting", "Linked"), (BANK, "Banking", "Linked"),
                         (NEW_BANK, "Banking", "Linked"))
    current = consent("lending", set(lending.required) - {"balanceSheet"}, {BOOKS, BANK})
    plan = confirm_plan(lending, current, listed)
    assert (plan.action, plan.data_types, plan.connections) == ("extend", ("balanceSheet",), (NEW_BANK,))
    assert plan.optional == tuple(sorted(lending.optional - {"banking-accountBalances"})) + ("banking-accountBalances",)
    required = consent("lending", set(lending.required), {BOOKS, BANK, NEW_BANK})
    optional_only = confirm_plan(lending, required, listed)
    assert (optional_only.action, optional_only.data_types, optional_only.connections) == ("extend", (), ())
    assert set(optional_only.optional) == lending.optional
    everything = consent("lending", set(lending.data_types), {BOOKS, BANK, NEW_BANK})
    nothing = confirm_plan(lending, everything, listed)
    assert nothing.action is None and nothing.why == "you already share everything this product needs"


def test_optional_types_are_offered_only_where_a_connection_in_scope_carries_them():
    lending = CATALOG.product("lending")
    books_only = consent("lending", {"balanceSheet"}, {BOOKS})
    plan = confirm_plan(lending, books_only, connections((BOOKS, "Accounting", "Linked")))
    assert "banking-accountBalances" not in plan.optional and "payments" in plan.optional


def test_a_revocation_in_plain_words():
    due = NOW + timedelta(days=30)
    impact = Impact(
        "co", "lending", None, NOW,
        delete=[{"connection_id": BOOKS, "data_type": "balanceSheet", "due_at": due, "products": ["lending"]},
                {"connection_id": BANK, "data_type": "banking-transactions", "due_at": due, "products": ["lending"]}],
        keep=[{"connection_id": BOOKS, "data_type": "invoices", "needed_by": ["dashboard"]},
              {"connection_id": BANK, "data_type": "banking-accounts", "needed_by": ["bank-feeds", "dashboard"]}],
        connections_losing_all_consent=[BANK],
    )
    assert impact_sentences(CATALOG, impact, {BANK: "Barclays (Banking)"}) == [
        "Lending origination's balance sheets and bank transactions are deleted after 30 days, on 2027-01-05.",
        "Bank feeds and Business dashboard keep using bank accounts.",
        "Business dashboard keeps using invoices.",
        "No product will use your Barclays (Banking) connection any more.",
    ]
    kept_all = Impact("co", "dashboard", None, NOW, keep=impact.keep[:1])
    assert impact_sentences(CATALOG, kept_all, {})[-1] == "Nothing is deleted: other products still need all of it."


@pytest.mark.parametrize(("name", "inside"), [("Balance sheets", "balance sheets"), ("VAT returns", "VAT returns")])
def test_names_inside_sentences(name, inside):
    assert phrase(name) == inside


def test_lists_in_words():
    assert [words_list(x) for x in ([], ["a"], ["a", "b"], ["a", "b", "c"])] == ["", "a", "a and b", "a, b and c"]
