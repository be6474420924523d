"""What a batch of parsed events does (pure): which reads were consented, which connection states win.

- A read entry is judged against consent at its `generated_at` with the reconciliation's interval code
  (`entitlement_intervals` + `covered`): a Complete read of a (connection, data type) no consent covered
  then is a violation; a read whose status is neither Complete nor NotSupported is a failed pull; a read
  of a connection the snapshot does not know is a connection change (the night reads it).
- A failed pull needs the night's reconciliation only when it leaves something to do (`stale_failures`):
  its type is not consented (the sync settings enable it), or its last Complete read on that connection
  goes stale (older than the catalog's freshness) before Codat's next scheduled sync could replace it: the
  reconciliation would find the pull missing and queue it. A failure whose last success stays fresh until
  the next sync is Codat's to retry on its schedule (and if that sync fails too, its event marks then).
- Connection events are applied in `generated_at` order and only when not older than the connection's stored
  `state_at`: an older event never overwrites newer state. connected/reconnected set `last_authorized_at`
  to their `generated_at` (restarting Open Banking expiry); deleted sets `deleted_at`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from consent_lifecycle.datatypes import COMPLETE
from consent_lifecycle.reconcile.intervals import covered, entitlement_intervals

NOT_SUPPORTED = "NotSupported"
AUTHORIZING = frozenset({"connection.connected", "connection.reconnected"})
LINKED_BY = {"connection.connected": "Linked", "connection.reconnected": "Linked"}
DELETED = "connection.deleted"
#: the snapshot columns a connection row needs to be inserted from an event's payload
REQUIRED = ["source_type", "platform_name", "status", "link_url", "created_at"]
STATE_COLUMNS = ["id", "company_id", "status", "state_at", "last_authorized_at", "status_changed_at"]


@dataclass(frozen=True)
class ReadVerdicts:
    """`reads` (parse.READ_COLUMNS) with `known` (the snapshot has the connection; company_id taken from
    it), `consented`, `violation` and `failed`."""

    reads: pd.DataFrame

    def companies(self, column: str) -> list[str]:
        return sorted(set(self.reads.loc[self.reads[column].to_numpy(), "company_id"].dropna()))


def judge_reads(reads: pd.DataFrame, snapshot: pd.DataFrame, events: pd.DataFrame) -> ReadVerdicts:
    """`snapshot`: the named connections (at least id, company_id, source_type); `events`: the ledger events
    of their companies (`load_events`)."""
    owner = snapshot.set_index("id")["company_id"]
    known = reads["connection_id"].isin(owner.index).to_numpy()
    judged = reads.assign(
        company_id=reads["company_id"].where(~known, reads["connection_id"].map(owner)),
        known=known, entry=range(len(reads)),
    )
    intervals = entitlement_intervals(events, snapshot[["id", "source_type"]])
    consented = covered(
        judged, intervals, at="generated_at", on=["company_id", "connection_id", "data_type"], fact_id="entry"
    ).to_numpy(dtype=bool) if len(judged) else judged["known"].to_numpy()
    judged["consented"] = consented & known
    status = judged["status"]
    judged["violation"] = known & ~judged["consented"].to_numpy() & (status == COMPLETE).to_numpy()
    judged["failed"] = ~status.isin([COMPLETE, NOT_SUPPORTED]).to_numpy()
    return ReadVerdicts(judged.drop(columns="entry"))


def stale_failures(judged: pd.DataFrame, successes: pd.DataFrame, keeps_fresh: pd.Timedelta | None) -> list[str]:
    """Companies of the failed reads in `judged` (`judge_reads`) that need reconciling: unconsented, or whose
    (connection, data type) has no Complete read in `successes` (connection_id, data_type, last_success, from
    the store and this batch) within `keeps_fresh` before the failure (freshness minus the sync interval: a
    success that old stays fresh until the next sync). `keeps_fresh` None: every failure."""
    failed = judged[judged["failed"].to_numpy(dtype=bool)]
    if keeps_fresh is None or failed.empty:
        return sorted(set(failed["company_id"].dropna()))
    merged = failed.merge(successes, on=["connection_id", "data_type"], how="left")
    fresh = (merged["last_success"] >= merged["generated_at"] - keeps_fresh).to_numpy(dtype=bool)
    needed = ~merged["consented"].to_numpy(dtype=bool) | ~fresh
    return sorted(set(merged.loc[needed, "company_id"].dropna()))


def last_reads(reads: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """(id, last_read_at) of the connections whose latest read moves forward; `stored`: id, last_read_at."""
    latest = reads.groupby("connection_id", as_index=False)["generated_at"].max()
    latest = latest.rename(columns={"connection_id": "id", "generated_at": "last_read_at"})
    merged = latest.merge(stored, on="id", how="inner", suffixes=("", "_stored"))
    newer = merged["last_read_at_stored"].isna() | (merged["last_read_at"] > merged["last_read_at_stored"])
    return merged.loc[newer.to_numpy(), ["id", "last_read_at"]].reset_index(drop=True)


@dataclass(frozen=True)
class ConnectionPlan:
    #: rows to UPDATE (id, status, state_at, last_authorized_at, status_changed_at, deleted_at)
    updates: pd.DataFrame
    #: full snapshot rows to INSERT (connections the snapshot does not know, of known companies)
    inserts: pd.DataFrame
    #: events older than their connection's state (not applied)
    stale: int


def plan_connections(changes: pd.DataFrame, stored: pd.DataFrame, known_companies: set[str]) -> ConnectionPlan:
    """`changes`: parse.CONNECTION_COLUMNS; `stored`: STATE_COLUMNS of the connections they name."""
    changes = changes.assign(status=changes["event_type"].map(LINKED_BY).fillna(changes["status"]))
    merged = changes.merge(stored[["id", "state_at"]], on="id", how="left")
    # an event at the very moment of the stored state counts as newer: what it says happened by then (and
    # applying the same event again writes the same values)
    newer = (merged["state_at"].isna() | (merged["generated_at"] >= merged["state_at"])).to_numpy()
    fresh = merged[newer].sort_values(["id", "generated_at"], kind="stable")
    latest = fresh.drop_duplicates("id", keep="last").drop(columns="state_at")
    authorized = (
        fresh[fresh["event_type"].isin(AUTHORIZING)].groupby("id")["generated_at"].max().rename("authorized_at")
    )
    latest = latest.merge(authorized, left_on="id", right_index=True, how="left")
    deleted_at = latest["generated_at"].where(latest["event_type"] == DELETED)
    latest = latest.assign(deleted_at=pd.to_datetime(deleted_at, utc=True))

    is_known = latest["id"].isin(stored["id"]).to_numpy()
    old = latest[is_known].merge(stored.drop(columns=["state_at", "company_id"]), on="id", suffixes=("", "_was"))
    status = old["status"].fillna(old["status_was"])
    changed = (status != old["status_was"]).to_numpy()
    was_authorized = old["last_authorized_at"]
    authorized_at = old["authorized_at"].where(
        was_authorized.isna() | (old["authorized_at"] > was_authorized), was_authorized
    )
    updates = pd.DataFrame({
        "id": old["id"], "status": status, "state_at": old["generated_at"],
        "last_authorized_at": pd.to_datetime(authorized_at, utc=True),
        "status_changed_at": old["status_changed_at"].where(~changed, old["generated_at"]),
        "deleted_at": old["deleted_at"],
    })

    new = latest[~is_known]
    complete = new[REQUIRED].notna().all(axis=1).to_numpy() & new["company_id"].isin(known_companies).to_numpy()
    new = new[complete]
    at = new["generated_at"]
    inserts = new[["id", "company_id", "source_type", "platform_name", "integration_key", "status", "link_url",
                   "created_at", "last_sync_at", "deleted_at"]].assign(
        first_seen_at=at, last_seen_at=at, status_changed_at=at, state_at=at,
        last_authorized_at=new["authorized_at"].where(new["status"] == "Linked"),
    )
    inserts["last_authorized_at"] = pd.to_datetime(inserts["last_authorized_at"], utc=True)
    return ConnectionPlan(updates.reset_index(drop=True), inserts.reset_index(drop=True), int((~newer).sum()))
