"""Deletion planning: what no remaining consent covers, when it may go, and what must wait. Pure, set-based.

From the entitlement intervals (`consent_lifecycle.reconcile.intervals`), at `now`:
- a (company, data type) is planned for deletion in the local store when some consent covered it on some
  connection and no consent covers it on any connection now;
- a connection is planned for deletion at Codat when some consent covered a data type on it and none
  covers any data type on it now (Codat deletes a connection whole, so one covered type keeps it);
- it is due when every product that covered it has had its retention: the latest `end + retention_days`
  over its intervals.
An item's key names what and the moment coverage ended, so re-planning is idempotent, and a consent that
covers it again ends the plan (the open item is cancelled: see `cancelled`).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE

PLAN_COLUMNS = ["key", "company_id", "connection_id", "data_type", "scope", "reason", "due_at", "ended_at"]
#: reasons the planner writes (items opened elsewhere, e.g. for unconsented pulls, are not its to cancel)
PLANNER_REASON_PREFIX = "consent ended"


def plan_deletions(intervals: pd.DataFrame, catalog: Catalog, now: datetime) -> pd.DataFrame:
    """Deletion items (PLAN_COLUMNS) for everything covered once and uncovered at `now`."""
    now_ts = pd.Timestamp(now)
    spans = intervals[intervals["start"] <= now_ts].copy()
    spans["open"] = spans["end"].isna() | (spans["end"] > now_ts)
    retention_days = spans["product"].map({k: p.retention_days for k, p in catalog.products.items()})
    spans["end"] = pd.to_datetime(spans["end"], utc=True)
    spans["due_at"] = spans["end"] + pd.to_timedelta(retention_days, unit="D")
    local = _uncovered(spans, ["company_id", "data_type"])
    local["connection_id"] = None
    local["scope"] = "local_store"
    local["key"] = (
        "local_store:" + local["company_id"] + ":" + local["data_type"] + ":" + _iso(local["ended_at"])
    )
    remote = _uncovered(spans, ["company_id", "connection_id"])
    remote["data_type"] = None
    remote["scope"] = "codat_connection"
    remote["key"] = (
        "codat_connection:"
        + remote["company_id"]
        + ":"
        + remote["connection_id"]
        + ":"
        + _iso(remote["ended_at"])
    )
    plan = pd.concat([local, remote], ignore_index=True)
    plan["reason"] = PLANNER_REASON_PREFIX + " " + _iso(plan["ended_at"]) + " (" + plan["products"] + ")"
    return plan[PLAN_COLUMNS].sort_values("key").reset_index(drop=True)


def cancelled(open_items: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """Open planner items (planned or held) the plan no longer holds: covered again, so not to be deleted."""
    mine = open_items[open_items["reason"].str.startswith(PLANNER_REASON_PREFIX)]
    return mine[~mine["key"].isin(plan["key"])]


def held(items: pd.DataFrame, holds: pd.DataFrame, connections: pd.DataFrame) -> pd.Series:
    """Whether each item is under an unreleased legal hold: one on the whole company, one on its data type,
    or (for a connection) one on any data type the connection carries. Aligned with `items`' index.

    `holds`: company_id, data_type (None = whole company); `connections`: id, source_type.
    """
    if items.empty or holds.empty:
        return pd.Series(False, index=items.index)
    whole = items["company_id"].isin(holds.loc[holds["data_type"].isna(), "company_id"])
    typed = holds.dropna(subset=["data_type"])[["company_id", "data_type"]].drop_duplicates()
    sources = typed.assign(source_type=typed["data_type"].map(DATA_TYPE_SOURCE))[
        ["company_id", "source_type"]
    ]
    frame = items[["company_id", "data_type", "connection_id", "scope"]].rename_axis("row").reset_index()
    frame["source_type"] = frame["connection_id"].map(connections.set_index("id")["source_type"])
    by_type = frame.merge(typed, on=["company_id", "data_type"])["row"]
    remote = frame[frame["scope"] == "codat_connection"]
    by_source = remote.merge(sources.drop_duplicates(), on=["company_id", "source_type"])["row"]
    return whole | items.index.isin(by_type) | items.index.isin(by_source)


def _uncovered(spans: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The `keys` groups no span covers at `now` (none open): when coverage ended, when the last retention
    runs out, and the products that covered them (sorted, distinct, comma-joined). Built-in aggregations
    over every group; the products are joined only for the uncovered groups, from distinct sorted rows."""
    grouped = spans.groupby(keys, as_index=False).agg(
        open=("open", "any"), ended_at=("end", "max"), due_at=("due_at", "max")
    )
    grouped = grouped[~grouped["open"]].drop(columns="open")
    products = (
        spans[[*keys, "product"]]
        .merge(grouped[keys], on=keys)
        .drop_duplicates()
        .sort_values([*keys, "product"])
        .groupby(keys, as_index=False)["product"]
        .agg(",".join)
        .rename(columns={"product": "products"})
    )
    return grouped.merge(products, on=keys, how="left")


def _iso(times: pd.Series) -> pd.Series:
    """ISO 8601 UTC text, vectorized (an empty Series stays a text Series)."""
    return pd.to_datetime(times, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").astype(str)
