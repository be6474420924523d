"""The one-company write path in plain Python equals the set-wise (pandas) reads it stands in for.

Over random sequences of consent events (the ops of `tests.test_ledger_properties`), after every step:
- `company_pairs` (one SELECT, the writes' and previews') equals `active_pairs` (current_state frames
  joined by `scope_pairs`, what retention's execution-time check reads);
- each impact preview (revoke of every active product, disconnect of every connection) equals the
  pandas computation the ledger used before (`reference_impact` below: the former `impact`, unchanged),
  on those frames: same rows, same order, same due times, same JSON;
- a revoke or disconnect returns exactly the preview taken just before it;
- the view a grant, extend or reconfirm returns equals the one `Ledger.consents` reads back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent_lifecycle.db import make_engine
from consent_lifecycle.ledger import ConsentError, Ledger
from consent_lifecycle.ledger.impact import Impact
from consent_lifecycle.ledger.reads import active_pairs, company_pairs
from tests.test_ledger_properties import CATALOG, T0, _ops, new_company, run

RETENTION = {key: p.retention_days for key, p in CATALOG.products.items()}


def reference_impact(
    company_id: str,
    pairs: pd.DataFrame,
    removed_mask: pd.Series,
    retention_days: dict[str, int],
    at: datetime,
    *,
    product: str | None = None,
    connection_id: str | None = None,
) -> Impact:
    """`consent_lifecycle.ledger.impact.impact` as it was in pandas, kept here as the reference."""
    removed, remaining = pairs[removed_mask], pairs[~removed_mask]
    key = ["connection_id", "data_type"]
    still = remaining.groupby(key)["product"].agg(lambda s: sorted(set(s))).rename("needed_by").reset_index()
    lost = (
        removed.assign(days=removed["product"].map(retention_days))
        .groupby(key)
        .agg(products=("product", lambda s: sorted(set(s))), days=("days", "max"))
        .reset_index()
        .merge(still, on=key, how="left")
    )
    gone = lost[lost["needed_by"].isna()].copy()
    gone["due_at"] = pd.Timestamp(at) + pd.to_timedelta(gone["days"], unit="D")
    kept = lost[lost["needed_by"].notna()]
    losing = sorted(set(removed["connection_id"]) - set(remaining["connection_id"]))
    return Impact(
        company_id=company_id,
        product=product,
        connection_id=connection_id,
        at=at,
        delete=gone.sort_values(key)[[*key, "due_at", "products"]].to_dict("records"),
        keep=kept.sort_values(key)[[*key, "needed_by"]].to_dict("records"),
        connections_losing_all_consent=losing,
    )


def assert_same_impact(got: Impact, expected: Impact) -> None:
    assert got == expected
    assert got.as_dict() == expected.as_dict()
    for row in got.delete:
        assert list(row) == ["connection_id", "data_type", "due_at", "products"]
    for row in got.keep:
        assert list(row) == ["connection_id", "data_type", "needed_by"]


def check_reads(ledger: Ledger, company_id: str, ids: dict[str, str], at: datetime) -> None:
    with ledger.engine.connect() as db:
        frame = active_pairs(db, company_id)
        fast = company_pairs(db, company_id)
    assert sorted(fast) == sorted(frame.itertuples(index=False, name=None))
    active = {v.product for v in ledger.consents(company_id) if v.status == "active"}
    for product in sorted(active):
        expected = reference_impact(
            company_id, frame, frame["product"] == product, RETENTION, at, product=product
        )
        assert_same_impact(ledger.impact_of_revoke(company_id, product, at), expected)
    for connection_id in ids.values():
        expected = reference_impact(
            company_id, frame, frame["connection_id"] == connection_id, RETENTION, at, connection_id=connection_id
        )
        assert_same_impact(ledger.impact_of_disconnect(company_id, connection_id, at), expected)


def preview(ledger: Ledger, company_id: str, ids: dict[str, str], op: tuple, at: datetime) -> Impact | None:
    try:
        if op[0] == "revoke":
            return ledger.impact_of_revoke(company_id, op[1], at)
        if op[0] == "disconnect":
            return ledger.impact_of_disconnect(company_id, ids[op[1]], at)
    except ConsentError:
        return None
    return None


@pytest.fixture
def ledger(db_url: str) -> Any:
    engine = make_engine(db_url)
    yield Ledger(engine, CATALOG)
    engine.dispose()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_ops(), min_size=1, max_size=10), gaps=st.lists(st.integers(0, 48), min_size=10, max_size=10))
def test_the_write_path_equals_the_set_wise_reads(ledger, ops, gaps):
    company_id, ids = new_company(ledger)
    at = T0
    for op, gap in zip(ops, gaps, strict=False):
        at = at + timedelta(hours=gap)
        before = preview(ledger, company_id, ids, op, at)
        try:
            result = run(ledger, company_id, ids, op, at)
        except ConsentError:
            continue
        if op[0] in ("revoke", "disconnect"):
            assert before is not None
            assert_same_impact(result, before)
        else:
            (expected,) = [v for v in ledger.consents(company_id) if v.product == op[1]]
            assert result == expected
            assert result.as_dict() == expected.as_dict()
        check_reads(ledger, company_id, ids, at + timedelta(minutes=1))


def test_a_shared_data_type_is_kept_and_the_rest_deleted_after_the_longest_retention(ledger):
    """A fixed case, on both databases: Lending (30 days) and Spend insights (7 days) share Accounting;
    Dashboard (7 days) keeps what it shares with Lending."""
    company_id, ids = new_company(ledger)
    who = {"actor": "t", "channel": "api", "at": T0}
    for product in ("dashboard", "lending", "spend-insights"):
        ledger.grant(company_id, product, wording_version="w1", **who)
    check_reads(ledger, company_id, ids, T0)
    effect = ledger.impact_of_disconnect(company_id, ids["acct"], T0)
    due = {(r["data_type"], r["due_at"]) for r in effect.delete}
    assert ("balanceSheet", pd.Timestamp(T0) + pd.Timedelta(days=30)) in due
    assert ("directCosts", pd.Timestamp(T0) + pd.Timedelta(days=7)) in due
    assert ("bills", pd.Timestamp(T0) + pd.Timedelta(days=30)) in due  # lending 30, dashboard and spend 7
    assert effect.connections_losing_all_consent == [ids["acct"]]
