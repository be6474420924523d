"""Entitlement intervals: when each product's consent covered each (connection, data type), from the ledger.

`replay(events, as_of=t)` answers "what was consented at t" for one t; a reconciliation asks it for every
pull and every product read. Intervals answer all of them with one join: a pull at `t` was consented for
`product` when some interval of (company, connection, data type, product) has `start <= t < end` (`end` NaT
= still open). The rules are replay's (see `consent_lifecycle.ledger.replay`), so the two agree at every
moment (a property test checks it):
- a `granted` event starts an epoch, which ends at the consent's first `revoked` after it or at the next
  `granted` (what came before a grant no longer counts);
- data types are added by `granted`/`extended` and stay until the epoch ends;
- a connection is added by `granted`/`extended` and removed by `disconnected` (or the epoch's end);
- a (connection, data type) pair counts only when the data type comes from that connection's source type.
Events are ordered by `event_id`, as replay orders them.
"""

from __future__ import annotations

import pandas as pd

from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.ledger.replay import ADDS

INTERVAL_COLUMNS = ["company_id", "connection_id", "data_type", "product", "start", "end"]


def entitlement_intervals(events: pd.DataFrame, connections: pd.DataFrame) -> pd.DataFrame:
    """Intervals from ledger `events` (`events_frame` columns) for `connections` (id, source_type)."""
    epochs = _epochs(events)
    if epochs.empty:
        return pd.DataFrame(columns=INTERVAL_COLUMNS)
    types = _data_type_spans(epochs)
    links = _connection_spans(epochs)
    pairs = types.merge(links, on=["consent_id", "epoch"], suffixes=("_type", "_link"))
    sources = connections[["id", "source_type"]].rename(columns={"id": "connection_id"})
    pairs = pairs.merge(sources, on="connection_id")
    pairs = pairs[pairs["data_type"].map(DATA_TYPE_SOURCE) == pairs["source_type"]]
    start = pairs[["start_type", "start_link"]].max(axis=1)
    end = _earliest(pairs["end_type"], pairs["end_link"])
    out = pairs.assign(start=start, end=end)
    out = out[out["end"].isna() | (out["start"] < out["end"])]
    return out[INTERVAL_COLUMNS].sort_values(INTERVAL_COLUMNS[:5]).reset_index(drop=True)


def covered(
    facts: pd.DataFrame, intervals: pd.DataFrame, *, at: str, on: list[str], fact_id: str
) -> pd.Series:
    """For each row of `facts`, whether some interval matching on `on` contains `facts[at]`.

    A boolean Series aligned with `facts`' index. One merge and one group-by, however many facts.
    """
    if facts.empty:
        return pd.Series(dtype=bool, index=facts.index)
    matched = facts[[fact_id, at, *on]].merge(intervals[[*on, "start", "end"]], on=on, how="inner")
    inside = (matched["start"] <= matched[at]) & (matched["end"].isna() | (matched[at] < matched["end"]))
    hits = set(matched.loc[inside, fact_id])
    return facts[fact_id].isin(hits)


def _epochs(events: pd.DataFrame) -> pd.DataFrame:
    """Events inside an epoch, each with its epoch number and the epoch's end (NaT while open)."""
    ordered = events.sort_values("event_id").copy()
    ordered["epoch"] = (
        (ordered["event_type"] == "granted").astype(int).groupby(ordered["consent_id"]).cumsum()
    )
    inside = ordered[ordered["epoch"] > 0]
    keys = ["consent_id", "epoch"]
    starts = inside[inside["event_type"] == "granted"].groupby(keys)["at"].first().rename("epoch_start")
    revoked = inside[inside["event_type"] == "revoked"].groupby(keys)["at"].first().rename("revoked_at")
    bounds = pd.concat([starts, revoked], axis=1).reset_index().sort_values(keys)
    bounds["next_start"] = bounds.groupby("consent_id")["epoch_start"].shift(-1)
    bounds["epoch_end"] = _earliest(bounds["revoked_at"], bounds["next_start"])
    inside = inside.merge(bounds[[*keys, "epoch_end"]], on=keys)
    # nothing after a revocation adds scope until the next grant (a new epoch)
    return inside[
        inside["epoch_end"].isna() | (inside["at"] < inside["epoch_end"]) | ~inside["event_type"].isin(ADDS)
    ]


def _data_type_spans(epochs: pd.DataFrame) -> pd.DataFrame:
    adds = epochs[epochs["event_type"].isin(ADDS)][
        ["consent_id", "company_id", "product", "epoch", "at", "epoch_end", "data_types"]
    ]
    exploded = (
        adds.explode("data_types").dropna(subset=["data_types"]).rename(columns={"data_types": "data_type"})
    )
    spans = exploded.groupby(
        ["consent_id", "company_id", "product", "epoch", "data_type"], as_index=False
    ).agg(start=("at", "min"), end=("epoch_end", "first"))
    return spans


def _connection_spans(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per stretch a connection stayed in a consent's scope: from an add to the next removal."""
    moves = epochs[epochs["event_type"].isin((*ADDS, "disconnected"))][
        ["consent_id", "epoch", "event_id", "event_type", "at", "epoch_end", "connection_ids"]
    ]
    moves = moves.explode("connection_ids").dropna(subset=["connection_ids"])
    moves = moves.rename(columns={"connection_ids": "connection_id"}).sort_values("event_id")
    moves["added"] = moves["event_type"].isin(ADDS)
    group = moves.groupby(["consent_id", "epoch", "connection_id"])
    # keep the changes only: an add after an add (or a removal after a removal) changes nothing
    changes = moves[moves["added"] != group["added"].shift(fill_value=False)].copy()
    changes["next_at"] = changes.groupby(["consent_id", "epoch", "connection_id"])["at"].shift(-1)
    spans = changes[changes["added"]]
    end = _earliest(spans["next_at"], spans["epoch_end"])
    return spans.assign(start=spans["at"], end=end)[["consent_id", "epoch", "connection_id", "start", "end"]]


def _earliest(left: pd.Series, right: pd.Series) -> pd.Series:
    """Element-wise earlier of two time Series where NaT means "never" (open)."""
    both = pd.concat([left, right], axis=1)
    return both.min(axis=1, skipna=True)
