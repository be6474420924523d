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


@settings(max_examples=80, deadline=None)
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
