"""The reconciliation diff: what Codat is set to pull, did pull, and what products read, against consent.

Every function is a set operation over frames (merges, anti-joins, one group-by): no loop over rows.
Findings come out as one frame (FINDING_COLUMNS) whose `key` says what the finding is about, so storing
them is an upsert and a rerun never duplicates one:

- `unconsented_sync_setting:{company}:{data_type}` Codat is set to pull a type nothing entitles now;
- `missing_pull:{company}:{connection}:{data_type}` entitled now, never pulled or not within freshness;
- `unconsented_pull:{pull_id}` a pull requested when no consent covered its (connection, data type);
- `pull_on_expired_connection:{pull_id}` a pull requested after the connection's consent had expired;
- `product_read_outside_consent:{read_id}` a product read a type its own consent did not cover then
  (another product's consent does not count: the seed's Dashboard/Lending rule).

The first two describe the present and are resolved when they go away; the other three are facts about
one event, found again identically by every rerun over the same window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.reconcile.intervals import covered

FINDING_COLUMNS = ["key", "kind", "company_id", "connection_id", "data_type", "product", "seen_at", "detail"]
#: kinds that describe the present (resolved when absent from a later check of the company)
STATE_KINDS = ("unconsented_sync_setting", "missing_pull")
#: kinds that describe one pull or read (kept once found)
EVENT_KINDS = ("unconsented_pull", "pull_on_expired_connection", "product_read_outside_consent")

PULL_COLUMNS = ["id", "company_id", "connection_id", "data_type", "status", "requested", "completed"]
SETTING_COLUMNS = ["company_id", "data_type", "fetch_on_first_link", "sync_schedule", "sync_order"]
READ_COLUMNS = ["id", "product", "company_id", "connection_id", "data_type", "at"]
#: pull statuses that end a pull (anything else is still in flight)
FINAL_STATUSES = frozenset(
    {
        "Complete",
        "FetchError",
        "MapError",
        "InternalError",
        "ProcessingError",
        "ValidationError",
        "AuthError",
        "Cancelled",
        "NotSupported",
        "RateLimitError",
        "PermissionsError",
        "PrerequisiteNotMet",
    }
)


def unconsented_pulls(
    pulls: pd.DataFrame, intervals: pd.DataFrame, consented: pd.Series | None = None
) -> pd.DataFrame:
    """Pulls requested when no product's consent covered their (connection, data type); `consented`, when
    the caller already has it (`consented_pulls`), is that answer aligned with `pulls`."""
    ok = consented_pulls(pulls, intervals) if consented is None else consented
    found = pulls[~ok]
    return _findings(
        found,
        "unconsented_pull",
        found["id"],
        seen_at=found["requested"],
        detail=found[["id", "status"]].rename(columns={"id": "pull_id"}),
    )


def consented_pulls(pulls: pd.DataFrame, intervals: pd.DataFrame) -> pd.Series:
    """For each pull, whether some product's consent covered its (connection, data type) when requested."""
    return covered(pulls, intervals, at="requested", on=["company_id", "connection_id", "data_type"], fact_id="id")


def pulls_on_expired_connections(pulls: pd.DataFrame, expired_since: pd.DataFrame) -> pd.DataFrame:
    """Pulls requested at or after their connection's consent expired (`expired_since`: connection_id,
    expired_at), except those Codat refused for authorization (an AuthError is the pull stopping)."""
    joined = pulls.merge(expired_since[["connection_id", "expired_at"]], on="connection_id")
    found = joined[(joined["requested"] >= joined["expired_at"]) & (joined["status"] != "AuthError")]
    return _findings(
        found,
        "pull_on_expired_connection",
        found["id"],
        seen_at=found["requested"],
        detail=found[["id", "status", "expired_at"]].rename(columns={"id": "pull_id"}),
    )


def reads_outside_consent(reads: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Product reads its own consent did not cover at the time (connection matched when the read names one)."""
    if reads.empty:
        return _findings(reads, "product_read_outside_consent", reads["id"], seen_at=reads["at"])
    named = reads["connection_id"].notna()
    ok_named = covered(
        reads[named],
        intervals,
        at="at",
        on=["company_id", "connection_id", "data_type", "product"],
        fact_id="id",
    )
    ok_any = covered(
        reads[~named], intervals, at="at", on=["company_id", "data_type", "product"], fact_id="id"
    )
    found = reads[~pd.concat([ok_named, ok_any]).reindex(reads.index).astype(bool)]
    return _findings(found, "product_read_outside_consent", found["id"].astype(str), seen_at=found["at"])


def scheduled_types(settings: pd.DataFrame) -> pd.DataFrame:
    """(company_id, data_type) Codat is set to pull: fetched on link or on a schedule."""
    on = settings["fetch_on_first_link"].astype(bool) | (settings["sync_schedule"].fillna(0) > 0)
    return settings.loc[on, ["company_id", "data_type"]].drop_duplicates()


def entitled_types(entitled: pd.DataFrame) -> pd.DataFrame:
    """(company_id, data_type) some active consent covers on some usable connection."""
    return entitled[["company_id", "data_type"]].drop_duplicates()


def unconsented_sync_settings(settings: pd.DataFrame, entitled: pd.DataFrame, now: datetime) -> pd.DataFrame:
    extra = _anti_join(scheduled_types(settings), entitled_types(entitled), ["company_id", "data_type"])
    return _findings(
        extra,
        "unconsented_sync_setting",
        extra["company_id"] + ":" + extra["data_type"],
        seen_at=pd.Timestamp(now),
    )


def missing_pulls(
    entitled: pd.DataFrame, pulls: pd.DataFrame, catalog: Catalog, now: datetime
) -> pd.DataFrame:
    """Entitled (connection, data type) never pulled successfully, or not within the catalog's freshness;
    not when a pull is in flight, nor when the platform does not support the type (latest pull NotSupported)."""
    keys = ["company_id", "connection_id", "data_type"]
    done = pulls[pulls["status"] == "Complete"].groupby(keys, as_index=False)["completed"].max()
    latest = pulls.sort_values("requested").groupby(keys, as_index=False).last()
    busy = latest[~latest["status"].isin(FINAL_STATUSES) | (latest["status"] == "NotSupported")][keys]
    wanted = _anti_join(entitled[keys], busy, keys).merge(done, on=keys, how="left")
    stale_before = pd.Timestamp(now) - timedelta(hours=catalog.freshness_hours)
    found = wanted[wanted["completed"].isna() | (wanted["completed"] < stale_before)]
    detail = found[["completed"]].rename(columns={"completed": "last_success"})
    return _findings(
        found,
        "missing_pull",
        found["company_id"] + ":" + found["connection_id"] + ":" + found["data_type"],
        seen_at=pd.Timestamp(now),
        detail=detail,
    )


def desired_sync_settings(settings: pd.DataFrame, entitled: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """Each company's sync settings as they should be: exactly its entitled types, each scheduled (kept as
    configured when it already was, else on the catalog's schedule). SETTING_COLUMNS, only for companies
    whose scheduled types differ from their entitled ones."""
    wanted = entitled_types(entitled)
    current = scheduled_types(settings)
    keys = ["company_id", "data_type"]
    differ = pd.concat([_anti_join(current, wanted, keys), _anti_join(wanted, current, keys)])["company_id"]
    companies = set(differ)
    wanted = wanted[wanted["company_id"].isin(companies)]
    kept = wanted.merge(settings, on=keys, how="left")
    kept["fetch_on_first_link"] = True
    fresh = kept["sync_schedule"].isna() | (kept["sync_schedule"] <= 0)
    kept.loc[fresh, "sync_schedule"] = catalog.sync_schedule_hours
    kept = kept.sort_values(["company_id", "sync_order", "data_type"], na_position="last")
    kept["sync_order"] = kept.groupby("company_id").cumcount()
    kept["sync_schedule"] = kept["sync_schedule"].astype(int)
    emptied = pd.DataFrame({"company_id": sorted(companies - set(wanted["company_id"]))})
    return pd.concat([kept[SETTING_COLUMNS], emptied], ignore_index=True)


def expired_since(classified: pd.DataFrame) -> pd.DataFrame:
    """(connection_id, expired_at) from the expiry model's output: expiry time, or when it went Deauthorized."""
    deauthorized = classified["status_changed_at"].where(classified["status"] == "Deauthorized")
    expired_at = pd.concat([classified["expires_at"], deauthorized], axis=1).min(axis=1)
    out = pd.DataFrame({"connection_id": classified["id"], "expired_at": expired_at})
    return out[out["expired_at"].notna()]


def _anti_join(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    merged = left.merge(right[on].drop_duplicates(), on=on, how="left", indicator=True)
    return merged[merged["_merge"] == "left_only"].drop(columns="_merge")


def _findings(
    found: pd.DataFrame,
    kind: str,
    subject: pd.Series,
    *,
    seen_at: pd.Series | pd.Timestamp,
    detail: pd.DataFrame | None = None,
) -> pd.DataFrame:
    out = pd.DataFrame(index=found.index)
    out["key"] = kind + ":" + subject.astype(str)
    out["kind"] = kind
    for column in ("company_id", "connection_id", "data_type", "product"):
        out[column] = found.get(column)
    out["seen_at"] = seen_at
    out["detail"] = _detail_dicts(detail) if detail is not None and not found.empty else [{}] * len(found)
    return out[FINDING_COLUMNS].reset_index(drop=True)


def _detail_dicts(detail: pd.DataFrame) -> list[dict]:
    plain = detail.astype(object).where(detail.notna(), None)
    for column in plain.columns:
        if pd.api.types.is_datetime64_any_dtype(detail[column]):
            plain[column] = [
                None if v is None else v.isoformat().replace("+00:00", "Z") for v in plain[column]
            ]
    return plain.to_dict("records")
