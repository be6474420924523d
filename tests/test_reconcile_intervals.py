"""Entitlement intervals agree with the ledger's replay at every moment, over random event streams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.ledger.replay import events_frame, replay
from consent_lifecycle.reconcile.intervals import covered, entitlement_intervals

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONNECTIONS = pd.DataFrame(
    {"id": ["acct", "bank1", "bank2"], "source_type": ["Accounting", "Banking", "Banking"]}
)
TYPES = ["invoices", "bills", "banking-accounts", "banking-transactions"]
KINDS = ["granted", "extended", "disconnected", "revoked", "reconfirmed"]

event = st.tuples(
    st.sampled_from(["c1", "c2"]),  # consent (product p1 / p2 of company co)
    st.sampled_from(KINDS),
    st.sets(st.sampled_from(TYPES), max_size=3),
    st.sets(st.sampled_from(list(CONNECTIONS["id"])), max_size=2),
    st.integers(min_value=0, max_value=3),  # hours after the previous event (0: same moment)
)


def frame(stream: list[tuple]) -> pd.DataFrame:
    rows, at = [], T0
    for event_id, (consent, kind, types, conns, gap) in enumerate(stream, start=1):
        at += timedelta(hours=gap)
        rows.append(
            (event_id, consent, "co", {"c1": "p1", "c2": "p2"}[consent], kind, sorted(types), sorted(conns), at)
        )
    return events_frame(rows)


def entitled_at(events: pd.DataFrame, moment: datetime) -> set[tuple[str, str, str]]:
    """(connection, data type, product) consented at `moment`, by replaying the ledger up to it."""
    state = replay(events, moment)
    active = state.consents[state.consents["status"] == "active"]
    pairs = state.data_types.merge(state.connections, on="consent_id").merge(active, on="consent_id")
    source = dict(zip(CONNECTIONS["id"], CONNECTIONS["source_type"], strict=True))
    return {
        (c, d, p) for c, d, p in zip(pairs["connection_id"], pairs["data_type"], pairs["product"], strict=True)
        if DATA_TYPE_SOURCE[d] == source[c]
    }


@settings(max_examples=40, deadline=None)
@given(st.lists(event, min_size=1, max_size=12))
def test_intervals_equal_replay_at_every_moment(stream):
    events = frame(stream)
    intervals = entitlement_intervals(events, CONNECTIONS)
    moments = sorted(set(events["at"])) + [events["at"].max() + pd.Timedelta(hours=1)]
    moments += [m - pd.Timedelta(minutes=30) for m in moments]
    for moment in moments:
        inside = intervals[(intervals["start"] <= moment) & (intervals["end"].isna() | (moment < intervals["end"]))]
        got = set(zip(inside["connection_id"], inside["data_type"], inside["product"], strict=True))
        assert got == entitled_at(events, moment.to_pydatetime()), moment


def test_covered_is_one_join_over_many_facts():
    events = frame([("c1", "granted", {"invoices"}, {"acct"}, 0), ("c1", "revoked", set(), set(), 10)])
    intervals = entitlement_intervals(events, CONNECTIONS)
    pulls = pd.DataFrame({
        "id": ["before", "during", "at-revocation", "after", "other-type"],
        "company_id": "co", "connection_id": "acct",
        "data_type": ["invoices", "invoices", "invoices", "invoices", "bills"],
        "requested": pd.to_datetime([T0 - timedelta(hours=1), T0 + timedelta(hours=5), T0 + timedelta(hours=10),
                                     T0 + timedelta(hours=11), T0 + timedelta(hours=5)], utc=True),
    })
    result = covered(pulls, intervals, at="requested", on=["company_id", "connection_id", "data_type"], fact_id="id")
    assert dict(zip(pulls["id"], result, strict=True)) == {
        "before": False, "during": True, "at-revocation": False, "after": False, "other-type": False,
    }


SNAPSHOT = CONNECTIONS.assign(
    company_id="co",
    status=["Linked", "Linked", "Deauthorized"],
    jurisdiction="uk",
    created_at=pd.Timestamp(T0),
    last_sync_at=pd.Timestamp(T0),
    last_authorized_at=pd.Timestamp(T0),
    last_reconfirmed_at=pd.NaT,
    deleted_at=pd.NaT,
)
SNAPSHOT["last_reconfirmed_at"] = pd.to_datetime(SNAPSHOT["last_reconfirmed_at"], utc=True)
SNAPSHOT["deleted_at"] = pd.to_datetime(SNAPSHOT["deleted_at"], utc=True)


@settings(max_examples=30, deadline=None)
@given(st.lists(event, min_size=1, max_size=12))
def test_entitlements_at_equal_usable_entitlements_of_replay(stream):
    """What reconcile() reads off the intervals is what replaying the ledger up to `now` entitles."""
    from consent_lifecycle.catalog import load_catalog
    from consent_lifecycle.ledger.views import usable_entitlements
    from consent_lifecycle.reconcile.intervals import entitlements_at

    catalog = load_catalog()
    events = frame(stream)
    intervals = entitlement_intervals(events, SNAPSHOT)
    for moment in sorted(set(events["at"])) + [events["at"].max() + pd.Timedelta(hours=1)]:
        now = moment.to_pydatetime()
        expected = usable_entitlements(replay(events, now), SNAPSHOT, catalog, now)
        got = entitlements_at(intervals, SNAPSHOT, catalog, now)
        if expected.empty:
            assert got.empty
        else:
            pd.testing.assert_frame_equal(got, expected)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from(["x", "y"])), min_size=1, max_size=8),
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.sampled_from(["x", "y", "z"])), max_size=8),
)
def test_key_codes_are_equal_exactly_for_equal_keys(table_rows, fact_rows):
    from consent_lifecycle.reconcile.intervals import key_codes

    table = pd.DataFrame(table_rows, columns=["k1", "k2"])
    facts = pd.DataFrame(fact_rows, columns=["k1", "k2"])
    fact_codes, table_codes = key_codes(facts, table, ["k1", "k2"])
    rows = [*table.itertuples(index=False), *facts.itertuples(index=False)]
    codes = [*table_codes, *fact_codes]
    for row, code in zip(rows, codes, strict=True):
        assert (code == -1) == any(pd.isna(v) for v in row)
    for left, left_code in zip(rows, codes, strict=True):
        for right, right_code in zip(rows, codes, strict=True):
            if left_code >= 0 and right_code >= 0:
                assert (left_code == right_code) == (tuple(left) == tuple(right))


def test_covered_finds_overlapping_intervals_of_one_key():
    """Two products' intervals on one key overlap: a fact inside the longer one is covered even when a
    later-starting, already-ended interval is the last to start before it."""
    intervals = pd.DataFrame({
        "company_id": "co", "connection_id": "acct", "data_type": "invoices", "product": ["p1", "p2"],
        "start": pd.to_datetime([T0, T0 + timedelta(hours=2)], utc=True),
        "end": pd.to_datetime([None, T0 + timedelta(hours=3)], utc=True),
    })
    pulls = pd.DataFrame({
        "id": ["a", "b", "c"], "company_id": "co", "connection_id": "acct", "data_type": "invoices",
        "requested": pd.to_datetime([T0 - timedelta(hours=1), T0 + timedelta(hours=5), T0 + timedelta(hours=2)], utc=True),
    })
    result = covered(pulls, intervals, at="requested", on=["company_id", "connection_id", "data_type"], fact_id="id")
    assert result.tolist() == [False, True, True]


def test_finding_detail_times_are_isoformat_per_value():
    from consent_lifecycle.reconcile.diff import _plain_values

    times = pd.Series(pd.to_datetime(
        ["2026-05-05T09:11:17.375680594Z", "2026-05-05T09:11:17.375680Z", "2026-05-05T09:11:17Z",
         "1960-01-01T00:00:00.5Z", None], utc=True, format="ISO8601"))
    got = _plain_values(times)
    assert got[:4] == [t.isoformat().replace("+00:00", "Z") for t in times[:4]]
    assert pd.isna(got[4]) and isinstance(got[4], float)
    assert _plain_values(pd.Series(pd.to_datetime([None, None], utc=True))) == [None, None]


def test_finding_detail_naive_times_are_isoformat_per_value():
    from consent_lifecycle.reconcile.diff import _plain_values

    times = pd.Series(pd.to_datetime(
        ["2026-05-05T09:11:17.375680594", "2026-05-05T09:11:17.375680", "2026-05-05T09:11:17", None],
        format="ISO8601"))
    got = _plain_values(times)
    assert got[:3] == [t.isoformat() for t in times[:3]]
    assert pd.isna(got[3])

