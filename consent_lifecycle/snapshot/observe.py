"""The connection snapshot: what Codat says each company's connections are, and when that changed.

Codat gives no expiry time and no history, so the snapshot keeps what the expiry model needs: when each
connection was last authorized, detected from status transitions between observations. Pure functions
over DataFrames; the database side lives in `consent_lifecycle.snapshot.store`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from consent_lifecycle.codat.models import Company

COMPANY_COLUMNS = ["id", "name", "jurisdiction", "tags", "redirect", "created_at", "last_sync_at"]
CONNECTION_COLUMNS = [
    "id", "company_id", "source_type", "platform_name", "integration_key", "status", "link_url",
    "created_at", "last_sync_at",
]
#: what the snapshot remembers between observations, per connection
STATE_COLUMNS = ["id", "status", "first_seen_at", "status_changed_at", "last_authorized_at"]
JURISDICTION_TAG = "region"


@dataclass(frozen=True)
class Observation:
    """Companies and their connections as one Codat read saw them."""

    companies: pd.DataFrame
    connections: pd.DataFrame
    #: requests sent to Codat for this read (retries included), when known
    codat_requests: int = 0

    @property
    def company_ids(self) -> list[str]:
        return self.companies["id"].tolist()


def observe(companies: Iterable[Company]) -> Observation:
    """Flatten Codat companies (with their embedded `dataConnections`) into two frames."""
    companies = list(companies)
    company_rows = [
        (c.id, c.name, _jurisdiction(c.tags), dict(c.tags), c.redirect, c.created, c.last_sync) for c in companies
    ]
    connection_rows = [
        (
            conn.id, c.id, conn.source_type, conn.platform_name, conn.integration_key, conn.status,
            conn.link_url, conn.created, conn.last_sync,
        )
        for c in companies
        for conn in c.data_connections
    ]
    return Observation(
        companies=_frame(company_rows, COMPANY_COLUMNS, ["created_at", "last_sync_at"]),
        connections=_frame(connection_rows, CONNECTION_COLUMNS, ["created_at", "last_sync_at"]),
    )


def observe_dicts(companies: list[dict[str, Any]]) -> Observation:
    """`observe`, from Codat's company bodies as plain dicts (camelCase keys, times as ISO 8601 text, e.g.
    `CodatClient.company_pages_as_dicts`): the same two frames, without building models."""
    company_rows = [
        (
            c["id"], c["name"], _jurisdiction(c.get("tags") or {}), dict(c.get("tags") or {}), c["redirect"],
            c.get("created"), c.get("lastSync"),
        )
        for c in companies
    ]
    connection_rows = [
        (
            conn["id"], c["id"], conn["sourceType"], conn["platformName"], conn.get("integrationKey"),
            conn["status"], conn["linkUrl"], conn["created"], conn.get("lastSync"),
        )
        for c in companies
        for conn in c.get("dataConnections") or ()
    ]
    return Observation(
        companies=_frame(company_rows, COMPANY_COLUMNS, ["created_at", "last_sync_at"], iso_text=True),
        connections=_frame(connection_rows, CONNECTION_COLUMNS, ["created_at", "last_sync_at"], iso_text=True),
    )


def merge_observation(previous: pd.DataFrame, observed: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """The snapshot rows to write for `observed` connections, given their `previous` state.

    - `status_changed_at`: `now` for a new connection or a changed status, else kept.
    - `last_authorized_at`: for a connection first seen Linked, its Codat `created` time (the earliest it
      can have been authorized, so expiry is never estimated late); `now` when it is seen going from any
      other status to Linked (a re-authorization keeps its connection id); else kept.
    - `transition`: "new", "changed" or "same"; `previous_status` for the operator.
    """
    state = previous.reindex(columns=STATE_COLUMNS).rename(columns={"status": "previous_status"})
    merged = observed.merge(state, on="id", how="left", validate="one_to_one")
    now_ts = pd.Timestamp(now)
    is_new = merged["previous_status"].isna()
    changed = ~is_new & (merged["previous_status"] != merged["status"])
    linked = merged["status"] == "Linked"
    reauthorized = changed & linked
    first_linked = is_new & linked

    merged["first_seen_at"] = merged["first_seen_at"].where(~is_new, now_ts)
    merged["status_changed_at"] = merged["status_changed_at"].where(~(is_new | changed), now_ts)
    authorized = merged["last_authorized_at"].where(~first_linked, merged["created_at"])
    merged["last_authorized_at"] = authorized.where(~reauthorized, now_ts)
    merged["last_seen_at"] = now_ts
    merged["transition"] = "same"
    merged.loc[changed, "transition"] = "changed"
    merged.loc[is_new, "transition"] = "new"
    return merged


def vanished(previous: pd.DataFrame, observed: pd.DataFrame, company_ids: Iterable[str]) -> pd.Series:
    """Ids of connections the snapshot holds for fully observed companies that Codat no longer lists."""
    covered = previous[previous["company_id"].isin(list(company_ids))]
    return covered.loc[~covered["id"].isin(observed["id"]), "id"].reset_index(drop=True)


def _jurisdiction(tags: dict[str, str]) -> str | None:
    value = tags.get(JURISDICTION_TAG)
    return value.strip().lower() if value and value.strip() else None


def _frame(rows: list[tuple], columns: list[str], times: list[str], *, iso_text: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for column in times:
        # ISO 8601 text may mix forms (with and without fractions of a second): parsed as ISO 8601, not by
        # the first value's format
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601" if iso_text else None)
    return frame
