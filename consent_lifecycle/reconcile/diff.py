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

import itertools
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.datatypes import COMPLETE, DATASET_FINAL_STATUSES
from consent_lifecycle.reconcile.intervals import covered, key_codes

FINDING_COLUMNS = ["key", "kind", "company_id", "connection_id", "data_type", "product", "seen_at", "detail"]
#: kinds that describe the present (resolved when absent from a later check of the company)
STATE_KINDS = ("unconsented_sync_setting", "missing_pull")
#: kinds that describe one pull or read (kept once found)
EVENT_KINDS = ("unconsented_pull", "pull_on_expired_connection", "product_read_outside_consent")

PULL_COLUMNS = ["id", "company_id", "connection_id", "data_type", "status", "requested", "completed"]
SETTING_COLUMNS = ["company_id", "data_type", "fetch_on_first_link", "sync_schedule", "sync_order"]
READ_COLUMNS = ["id", "product", "company_id", "connection_id", "data_type", "at"]



def unconsented_pulls(
    pulls: pd.DataFrame, intervals: pd.DataFrame, consented: pd.Series | None = None
) -> pd.DataFrame:
    """Pulls requested when no product's consent covered their (connection, data type); `consented`, when
    the caller already has it (`consented_pulls`), is that answer aligned with `pulls`."""
    ok = consented_pulls(pulls, intervals) if consented is None else consented
    found = pulls[~ok]
    detail = [
        {"pull_id": pull, "status": status}
        for pull, status in zip(_plain_values(found["id"]), _plain_values(found["status"]), strict=True)
    ]
    return _findings(found, "unconsented_pull", [found["id"]], seen_at=found["requested"], detail=detail)


def consented_pulls(pulls: pd.DataFrame, intervals: pd.DataFrame) -> pd.Series:
    """For each pull, whether some product's consent covered its (connection, data type) when requested."""
    return covered(pulls, intervals, at="requested", on=["company_id", "connection_id", "data_type"], fact_id="id")


def pulls_on_expired_connections(pulls: pd.DataFrame, expired_since: pd.DataFrame) -> pd.DataFrame:
    """Pulls requested at or after their connection's consent expired (`expired_since`: connection_id,
    expired_at), except those Codat refused for authorization (an AuthError is the pull stopping)."""
    expiry = expired_since[["connection_id", "expired_at"]]
    if not expiry["connection_id"].is_unique or expiry["connection_id"].isna().any():
        joined = pulls.merge(expiry, on="connection_id")
        found = joined[(joined["requested"] >= joined["expired_at"]) & (joined["status"] != "AuthError")]
    else:  # one expiry per connection: a look-up, not a join
        expired_at = expiry["expired_at"].array.take(
            pd.Index(expiry["connection_id"]).get_indexer(pulls["connection_id"]), allow_fill=True
        )
        late = (pulls["requested"] >= expired_at).to_numpy() & (_text(pulls["status"]) != "AuthError")
        found = pulls[late].assign(expired_at=expired_at[late])
    columns = (_plain_values(found["id"]), _plain_values(found["status"]), _plain_values(found["expired_at"]))
    detail = [
        {"pull_id": pull, "status": status, "expired_at": expired}
        for pull, status, expired in zip(*columns, strict=True)
    ]
    return _findings(found, "pull_on_expired_connection", [found["id"]], seen_at=found["requested"], detail=detail)


def reads_outside_consent(reads: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Product reads its own consent did not cover at the time (connection matched when the read names one)."""
    if reads.empty:
        return _findings(reads, "product_read_outside_consent", [reads["id"]], seen_at=reads["at"])
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
    return _findings(found, "product_read_outside_consent", [found["id"].astype(str)], seen_at=found["at"])


def scheduled_types(settings: pd.DataFrame) -> pd.DataFrame:
    """(company_id, data_type) Codat is set to pull: fetched on link or on a schedule."""
    return settings.loc[_scheduled(settings), ["company_id", "data_type"]].drop_duplicates()


def _scheduled(settings: pd.DataFrame) -> np.ndarray:
    """Whether each setting makes Codat pull: fetched on link or on a schedule."""
    return (settings["fetch_on_first_link"].astype(bool) | (settings["sync_schedule"].fillna(0) > 0)).to_numpy()


def entitled_types(entitled: pd.DataFrame) -> pd.DataFrame:
    """(company_id, data_type) some active consent covers on some usable connection."""
    return entitled[["company_id", "data_type"]].drop_duplicates()


def unconsented_sync_settings(settings: pd.DataFrame, entitled: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """(company_id, data_type) Codat is set to pull (`scheduled_types`) that no entitlement covers: an
    anti-join on integer codes (`key_codes`)."""
    keys = ["company_id", "data_type"]
    setting_keys, entitled_keys = key_codes(settings, entitled, keys)
    rows = np.flatnonzero(_scheduled(settings))
    rows = rows[~pd.Series(setting_keys[rows]).duplicated().to_numpy()]  # the first setting of each type
    extra = settings.iloc[rows[~np.isin(setting_keys[rows], entitled_keys)]][keys]
    return _findings(
        extra,
        "unconsented_sync_setting",
        [extra["company_id"], extra["data_type"]],
        seen_at=pd.Timestamp(now),
    )


def missing_pulls(
    entitled: pd.DataFrame, pulls: pd.DataFrame, catalog: Catalog, now: datetime
) -> pd.DataFrame:
    """Entitled (connection, data type) never pulled successfully, or not within the catalog's freshness;
    not when a pull is in flight, nor when the platform does not support the type (latest pull NotSupported).

    The pulls are matched to the entitled rows by integer codes (`key_codes`), and each entitled key's last
    success and latest status are one group-by over those codes."""
    keys = ["company_id", "connection_id", "data_type"]
    pull_keys, entitled_keys = key_codes(pulls, entitled, keys)
    matched = pull_keys >= 0
    complete = matched & (_text(pulls["status"]) == COMPLETE)
    done = pd.Series(pulls["completed"].array[complete]).groupby(pull_keys[complete]).max()
    by_time = _requested_order(pulls)
    by_time = by_time[matched[by_time]]
    latest = pd.Series(pulls["status"].array[by_time]).groupby(pull_keys[by_time]).last()
    busy = latest[~latest.isin(DATASET_FINAL_STATUSES) | (latest == "NotSupported")].index
    wanted = entitled[keys].reset_index(drop=True)
    wanted["completed"] = done.reindex(entitled_keys).array
    wanted = wanted[~pd.Index(entitled_keys).isin(busy)]
    stale_before = pd.Timestamp(now) - timedelta(hours=catalog.freshness_hours)
    found = wanted[wanted["completed"].isna() | (wanted["completed"] < stale_before)]
    detail = [{"last_success": last} for last in _plain_values(found["completed"])]
    return _findings(
        found,
        "missing_pull",
        [found["company_id"], found["connection_id"], found["data_type"]],
        seen_at=pd.Timestamp(now),
        detail=detail,
    )


def desired_sync_settings(settings: pd.DataFrame, entitled: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """Each company's sync settings as they should be: exactly its entitled types, each scheduled often enough
    to stay within the catalog's freshness (kept as configured when it already is, else on the catalog's
    schedule). SETTING_COLUMNS, only for companies whose scheduled types differ from their entitled ones or
    that schedule an entitled type less often than the freshness needs: a weekly sync of a type the products
    want within 48 hours went stale between syncs, and the reconciliation queued its pull again and again."""
    wanted = entitled_types(entitled)
    current = scheduled_types(settings)
    keys = ["company_id", "data_type"]
    too_rare = settings[settings["sync_schedule"] > catalog.freshness_hours].merge(wanted[keys], on=keys)
    differ = pd.concat([_anti_join(current, wanted, keys), _anti_join(wanted, current, keys), too_rare[keys]])
    companies = set(differ["company_id"])
    wanted = wanted[wanted["company_id"].isin(companies)]
    kept = wanted.merge(settings, on=keys, how="left")
    kept["fetch_on_first_link"] = True
    unscheduled = kept["sync_schedule"].isna() | (kept["sync_schedule"] <= 0)
    kept.loc[unscheduled | (kept["sync_schedule"] > catalog.freshness_hours), "sync_schedule"] = (
        catalog.sync_schedule_hours
    )
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
    subject: list[pd.Series],
    *,
    seen_at: pd.Series | pd.Timestamp,
    detail: list[dict] | None = None,
) -> pd.DataFrame:
    """FINDING_COLUMNS for the `found` rows: key `{kind}:{subject parts joined by ":"}`, and `detail` (one
    dict per row, built by the caller from `_plain_values` columns; `{}` when None)."""
    out = pd.DataFrame(index=found.index)
    out["key"] = _finding_keys(kind, subject)
    out["kind"] = kind
    for column in ("company_id", "connection_id", "data_type", "product"):
        out[column] = found.get(column)
    out["seen_at"] = seen_at
    out["detail"] = detail if detail is not None and not found.empty else [{}] * len(found)
    return out[FINDING_COLUMNS].reset_index(drop=True)


def _finding_keys(kind: str, parts: list[pd.Series]) -> pd.Series:
    """`{kind}:{part}:{part}...` per row (missing where a part is): each key is joined in one step
    (`str.join` mapped over the rows, in C), not grown one `+` at a time."""
    texts = [part.astype(str) for part in parts]
    missing = np.zeros(len(parts[0]), dtype=bool)
    for text in texts:
        missing |= text.isna().to_numpy()
    columns = [np.where(missing, "", text.to_numpy(dtype=object)) for text in texts]
    keys = np.array(list(map(":".join, zip(itertools.repeat(kind), *columns))), dtype=object)
    keys[missing] = np.nan
    return pd.Series(keys, index=parts[0].index, dtype="str")


def _text(values: pd.Series) -> np.ndarray:
    """A text column as an object array, for comparisons without pandas' per-call missing-value passes
    (a missing value compares unequal to any text, as in pandas)."""
    return values.to_numpy(dtype=object)


def _plain_values(column: pd.Series) -> list:
    """A detail column's values as they are stored: text as is, times as ISO text ("Z" for UTC) with NaT
    as NaN (None when every one is NaT), other missing values as None, numbers as Python numbers."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        missing = column.isna().to_numpy()
        if missing.all():
            return [None] * len(column)
        text = _iso_text(column)
        text[missing] = np.nan
        return text.tolist()
    if isinstance(column.dtype, pd.StringDtype):
        values = column.to_numpy(dtype=object)
        values[column.isna().to_numpy()] = None
        return values.tolist()
    return column.astype(object).where(column.notna(), None).tolist()


def _iso_text(times: pd.Series) -> np.ndarray:
    """`Timestamp.isoformat()` of each time, "+00:00" written "Z", as an object array. For UTC and naive
    times numpy writes the text (with the "Z"), a call per precision the times need: seconds, then
    microseconds or nanoseconds for those that have a fraction."""
    tz = getattr(times.dtype, "tz", None)
    if tz is not None and str(tz) != "UTC":
        return np.array(
            [None if pd.isna(v) else v.isoformat().replace("+00:00", "Z") for v in times], dtype=object
        )
    nanos = pd.DatetimeIndex(times.array).as_unit("ns")
    values = nanos.tz_localize(None).to_numpy()
    fraction = nanos.asi8 % 10**9
    in_micros = fraction % 1000 == 0
    zone = "UTC" if tz is not None else "naive"  # numpy writes "Z" after UTC times
    text = np.empty(len(values), dtype=object)
    for unit, rows in (("s", fraction == 0), ("us", in_micros & (fraction != 0)), ("ns", ~in_micros)):
        if rows.any():
            text[rows] = np.datetime_as_string(values[rows], unit=unit, timezone=zone).astype(object)
    return text


def _requested_order(pulls: pd.DataFrame) -> np.ndarray:
    """Positions of `pulls` in the order `pulls.sort_values("requested")` gives (the same sort of the same
    values, so ties fall the same way; NaT last)."""
    missing = pulls["requested"].isna().to_numpy()
    present = np.flatnonzero(~missing)
    times = pd.DatetimeIndex(pulls["requested"].array).tz_localize(None).to_numpy()[present]
    return np.concatenate([present[np.argsort(times, kind="quicksort")], np.flatnonzero(missing)])
