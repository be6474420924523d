"""When each connection's consent expires, and what that makes it now. Pure, set-wise, `now` explicit.

Codat gives no expiry time: a connection's consent is renewed when it is authorized (first seen Linked, or
seen going back to Linked) and, under a `reconfirmation` policy (UK AISP, 90 days), when the customer
reconfirms; it expires a policy period later. Classes, first match wins:

- `unlinked`: the client unlinked it (status Unlinked);   - `pending`: authorization never finished;
- `expired`: status Deauthorized, or past `expires_at`;
- `expiring`: within the largest warning lead time of `expires_at` (`threshold_days` = the smallest lead
  time already reached, e.g. 7 then 1);
- `stale`: Linked, no expiry policy (accounting), and no sync for `stale_after_days` (platforms revoke
  tokens around 90 days without one);
- `healthy`: the rest.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from consent_lifecycle.catalog import Catalog

CLASSES = ("healthy", "expiring", "expired", "stale", "pending", "unlinked")
#: what `classify` reads: one row per connection
INPUT_COLUMNS = [
    "id", "company_id", "source_type", "status", "jurisdiction", "created_at", "last_sync_at",
    "last_authorized_at", "last_reconfirmed_at",
]


def policies_for(catalog: Catalog, connections: pd.DataFrame) -> pd.DataFrame:
    """The policy of each (source type, jurisdiction) pair present: one lookup per pair, not per row."""
    pairs = connections[["source_type", "jurisdiction"]].drop_duplicates()
    rows = []
    for source_type, jurisdiction in pairs.itertuples(index=False):  # a handful of distinct pairs
        policy = catalog.policy_for(source_type, None if pd.isna(jurisdiction) else jurisdiction)
        rows.append(
            (source_type, jurisdiction, policy.period_days if policy else np.nan, policy.basis if policy else None)
        )
    return pd.DataFrame(rows, columns=["source_type", "jurisdiction", "period_days", "basis"])


def classify(connections: pd.DataFrame, catalog: Catalog, now: datetime) -> pd.DataFrame:
    """`connections` (INPUT_COLUMNS) plus renewed_at, expires_at, days_left, expiry_class, threshold_days."""
    now_ts = pd.Timestamp(now)
    frame = connections.copy()
    frame["jurisdiction"] = frame["jurisdiction"].astype(object).where(frame["jurisdiction"].notna(), None)
    frame = frame.merge(policies_for(catalog, frame), on=["source_type", "jurisdiction"], how="left")

    authorized = frame["last_authorized_at"].fillna(frame["created_at"])
    reconfirmed = frame["last_reconfirmed_at"].where(frame["basis"] == "reconfirmation")
    frame["renewed_at"] = authorized.where(~(reconfirmed > authorized), reconfirmed)
    frame["expires_at"] = frame["renewed_at"] + pd.to_timedelta(frame["period_days"], unit="D")
    frame["days_left"] = (frame["expires_at"] - now_ts) / pd.Timedelta(days=1)

    leads = sorted(catalog.warning_lead_days)  # ascending, e.g. [1, 7]
    status = frame["status"]
    has_policy = frame["period_days"].notna()
    linked = status == "Linked"
    last_activity = frame["last_sync_at"].fillna(frame["created_at"])
    stale_for = (now_ts - last_activity) / pd.Timedelta(days=1)
    conditions = [
        status == "Unlinked",
        status == "PendingAuth",
        (status == "Deauthorized") | (linked & has_policy & (frame["days_left"] <= 0)),
        linked & has_policy & (frame["days_left"] <= max(leads)),
        linked & ~has_policy & (stale_for >= catalog.stale_after_days),
    ]
    frame["expiry_class"] = np.select(conditions, ["unlinked", "pending", "expired", "expiring", "stale"], "healthy")

    # the smallest lead time already reached: bins (0, 1] -> 1, (1, 7] -> 7
    expiring = frame["expiry_class"] == "expiring"
    bins = pd.cut(frame["days_left"].where(expiring), bins=[0, *leads], labels=leads, right=True)
    frame["threshold_days"] = pd.array(bins.astype("float"), dtype="Int64")
    return frame


NOTIFICATION_COLUMNS = [
    "key", "company_id", "connection_id", "kind", "threshold_days", "expires_at", "link", "created_at", "due_at",
]


def plan_notifications(classified: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """One notification per (connection, threshold, expiry): its key makes a rerun queue nothing new.

    Reads `classify`'s output plus `link_url` (the connection's re-consent link), `redirect` (the company's
    Hosted Link, used when a connection has none) and `status_changed_at`. An `expiry_warning` is keyed by
    its threshold and the expiry it warns of (a reconfirmation moves the expiry, so a new warning is due);
    an `expired` notice by when the connection expired (the Deauthorized transition, or `expires_at`).
    """
    warn = classified["expiry_class"] == "expiring"
    gone = classified["expiry_class"] == "expired"
    chosen = classified[warn | gone].copy()
    deauthorized = chosen["status"] == "Deauthorized"
    chosen["expired_at"] = chosen["expires_at"].where(~deauthorized, chosen["status_changed_at"])
    chosen["kind"] = np.where(chosen["expiry_class"] == "expiring", "expiry_warning", "expired")
    chosen["when"] = chosen["expires_at"].where(chosen["kind"] == "expiry_warning", chosen["expired_at"])
    stamp = chosen["when"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").fillna("unknown")
    threshold = chosen["threshold_days"].astype("string").fillna("0")
    chosen["key"] = chosen["kind"] + ":" + chosen["id"] + ":" + threshold + "d:" + stamp
    chosen["link"] = chosen["link_url"].where(chosen["link_url"].notna(), chosen["redirect"])
    now_ts = pd.Timestamp(now)
    planned = chosen.rename(columns={"id": "connection_id", "when": "expires_at_"}).assign(
        created_at=now_ts, due_at=now_ts
    )
    planned = planned.drop(columns="expires_at").rename(columns={"expires_at_": "expires_at"})
    return planned[NOTIFICATION_COLUMNS].reset_index(drop=True)


#: the operator's table of what needs attention: these columns (what, how urgent, when first; the
#: company's name beside the ids), these classes, most urgent first
REPORT_COLUMNS = [
    "expiry_class", "expires_at", "threshold_days", "company", "platform_name", "source_type", "status",
    "company_id", "connection_id",
]
ATTENTION_CLASSES = ("expired", "expiring", "stale")  # by urgency
REPORT_ORDER = ["urgency", "expires_at"]


def class_counts(classified: pd.DataFrame) -> dict[str, int]:
    """Connections per class (every class, zero included)."""
    counts = classified["expiry_class"].value_counts()
    return {name: int(counts.get(name, 0)) for name in CLASSES}


def attention_table(classified: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The first `limit` expiring, expired and stale connections (REPORT_COLUMNS): expired first, then
    expiring, then stale, each soonest expiry first. `company` is the company's name when `classified` has
    it. A Deauthorized connection expired when it was deauthorized (`status_changed_at`, when known): its
    policy expiry, perhaps still ahead, is not shown.

    The sort is stable, so the first `limit` rows of the tables of consecutive parts, put together and
    cut again by `top_attention`, are the first `limit` rows of the whole."""
    attention = classified[classified["expiry_class"].isin(ATTENTION_CLASSES)]
    table = attention.rename(columns={"id": "connection_id"}).reindex(
        columns=[*REPORT_COLUMNS, "status_changed_at"]
    )
    deauthorized = table["status"] == "Deauthorized"
    ended = pd.to_datetime(table["status_changed_at"], utc=True)
    expires = pd.to_datetime(table["expires_at"], utc=True)
    expired_at = pd.concat([expires, ended], axis=1).min(axis=1).where(ended.notna())  # unknown: not shown
    table["expires_at"] = expires.where(~deauthorized, expired_at)
    return top_attention(table[REPORT_COLUMNS], limit)


def top_attention(table: pd.DataFrame, limit: int) -> pd.DataFrame:
    """`table`'s first `limit` rows in report order (stable: ties keep their order)."""
    ranked = table.assign(urgency=table["expiry_class"].map({c: i for i, c in enumerate(ATTENTION_CLASSES)}))
    return ranked.sort_values(REPORT_ORDER, kind="stable").head(limit).drop(columns="urgency").reset_index(drop=True)
