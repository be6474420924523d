"""Consents as they stood at any moment, reconstructed from the ledger's events alone (set-wise, no loops).

Rules of the event stream, per consent:
- `granted` starts an epoch: what came before it no longer counts (a grant after a revocation starts afresh);
- `extended` adds data types and connections; `disconnected` removes connections (a later `extended` may
  add one back: the latest of the two wins); `reconfirmed` changes no scope;
- `revoked` ends the epoch: the consent is revoked until the next `granted`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

EVENT_COLUMNS = [
    "event_id",
    "consent_id",
    "company_id",
    "product",
    "event_type",
    "data_types",
    "connection_ids",
    "at",
]
ADDS = ("granted", "extended")


@dataclass(frozen=True)
class ConsentState:
    """consents: consent_id, company_id, product, status, granted_at, revoked_at, updated_at;
    data_types: consent_id, data_type; connections: consent_id, connection_id."""

    consents: pd.DataFrame
    data_types: pd.DataFrame
    connections: pd.DataFrame


def replay(events: pd.DataFrame, as_of: datetime | None = None) -> ConsentState:
    """The state of every consent in `events` as of `as_of` (all events when None)."""
    seen = events if as_of is None else events[events["at"] <= pd.Timestamp(as_of)]
    starts = (
        seen[seen["event_type"] == "granted"]
        .groupby("consent_id", as_index=False)
        .agg(epoch=("event_id", "max"), granted_at=("at", "max"))
    )
    epoch = seen.merge(starts, on="consent_id")
    epoch = epoch[epoch["event_id"] >= epoch["epoch"]]

    last = epoch.sort_values("event_id").groupby("consent_id", as_index=False).last()
    revoked = epoch[epoch["event_type"] == "revoked"].groupby("consent_id")["at"].max().rename("revoked_at")
    consents = last[["consent_id", "company_id", "product", "granted_at", "at"]].rename(
        columns={"at": "updated_at"}
    )
    consents = consents.merge(revoked, on="consent_id", how="left")
    consents["status"] = consents["revoked_at"].isna().map({True: "active", False: "revoked"})

    adds = epoch[epoch["event_type"].isin(ADDS)]
    data_types = (
        adds[["consent_id", "data_types"]]
        .explode("data_types")
        .dropna()
        .rename(columns={"data_types": "data_type"})
        .drop_duplicates()
        .reset_index(drop=True)
    )
    connections = _connections(epoch)
    return ConsentState(consents.reset_index(drop=True), data_types, connections)


def _connections(epoch: pd.DataFrame) -> pd.DataFrame:
    moves = epoch[epoch["event_type"].isin((*ADDS, "disconnected"))][
        ["consent_id", "event_id", "event_type", "connection_ids"]
    ]
    moves = moves.explode("connection_ids").dropna(subset=["connection_ids"])
    moves["added"] = moves["event_type"].isin(ADDS)
    latest = (
        moves.sort_values("event_id")
        .groupby(["consent_id", "connection_ids"], as_index=False)["added"]
        .last()
    )
    kept = latest[latest["added"]].rename(columns={"connection_ids": "connection_id"})
    return kept[["consent_id", "connection_id"]].reset_index(drop=True)


def events_frame(rows: list[tuple] | list[dict]) -> pd.DataFrame:
    """Events as a frame with the columns `replay` reads; `at` as UTC timestamps."""
    frame = (
        pd.DataFrame.from_records(rows, columns=EVENT_COLUMNS)
        if rows
        else pd.DataFrame(columns=EVENT_COLUMNS)
    )
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    frame["event_id"] = frame["event_id"].astype("int64")
    return frame
