"""Access checks in bulk: may each product read each data type on each connection of each company, and why
not (`consent_lifecycle.access.reasons`)? Set-wise: one statement reads what every check needs
(`access.facts.asked_now`; per 2,000 checks on SQLite), then vector conditions decide them all.

A check at `now` reads the current-state tables; a check with an explicit other `at` reads the consents
replayed from the ledger as of `at` (one replay per company and time: correctness over speed there). The
connection snapshot is the current one in both cases and expiry is judged at the check's time, as
`Ledger.entitlements(company_id, as_of=at)` does, so a check agrees with `access.is_permitted`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from consent_lifecycle.access.facts import asked_now, consents_as_of
from consent_lifecycle.access.reasons import REFUSALS
from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import as_utc
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.ledger import ConsentError
from consent_lifecycle.ledger.scope import check_data_type_key
from consent_lifecycle.ledger.views import usable_connections

CHECK_COLUMNS = ["company_id", "product", "connection_id", "data_type"]


def check_access(engine: Engine, catalog: Catalog, checks: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """`checks` (CHECK_COLUMNS, optionally `at`: a row without one is decided at `now`) in the same order,
    plus `permitted` (bool) and `reason` (a code of `access.reasons.REASONS`).

    Raises (writing nothing) for the first row with a missing field, an unknown product (`CatalogError`)
    or an unknown Codat data type (`ConsentError`), naming the row's position and the value."""
    validate_checks(catalog, checks)
    now = as_utc(now)
    frame = checks[CHECK_COLUMNS].reset_index(drop=True)
    at = pd.to_datetime(checks["at"], utc=True).reset_index(drop=True) if "at" in checks else None
    past = np.zeros(len(frame), dtype=bool) if at is None else (at.notna() & (at != pd.Timestamp(now))).to_numpy()
    with engine.connect() as db:
        facts = asked_now(db, frame)
    reasons = np.full(len(frame), "permitted", dtype=object)
    if not past.all():
        reasons[~past] = decide(frame[~past], facts[~past], catalog, now)
    if past.any():
        rows = frame[past].assign(at=at[past])
        for (company_id, moment), group in rows.groupby(["company_id", "at"], sort=False):
            when = moment.to_pydatetime()
            replayed = facts.loc[group.index].assign(**consents_as_of(engine, catalog, company_id, when, group))
            reasons[group.index.to_numpy()] = decide(group, replayed, catalog, when)
    result = checks.copy()
    result["permitted"] = reasons == "permitted"
    result["reason"] = reasons
    return result


def validate_checks(catalog: Catalog, checks: pd.DataFrame, what: str = "checks") -> None:
    """An error naming the first bad row (`what[position]`) and value: a missing field, an unknown product,
    an unknown data type."""
    missing = [column for column in CHECK_COLUMNS if column not in checks.columns]
    if missing:
        raise ConsentError(f"{what} lack the column {missing[0]!r} (expected {', '.join(CHECK_COLUMNS)})")
    for column in CHECK_COLUMNS:
        values = checks[column]
        if pd.api.types.infer_dtype(values, skipna=False) == "string":  # all strings: C-speed, no row loop
            bad = np.flatnonzero((values == "").to_numpy(dtype=bool))
        else:
            bad = np.flatnonzero(~values.map(lambda v: isinstance(v, str) and v != "").to_numpy(dtype=bool))
        if len(bad):
            raise ConsentError(f"{what}[{bad[0]}]: {column} must be a non-empty string, got {values.iloc[bad[0]]!r}")
    _first_refused(what, checks["product"], catalog.product, list(catalog.products))
    _first_refused(what, checks["data_type"], check_data_type_key, list(DATA_TYPE_SOURCE))


def _first_refused(what: str, values: pd.Series, check: Callable[[str], object], known: list[str]) -> None:
    """Run `check` on the first value not in `known` and raise its error (same type) prefixed with the row."""
    bad = np.flatnonzero(~values.isin(known).to_numpy())
    if len(bad):
        try:
            check(values.iloc[bad[0]])
        except ValueError as exc:
            raise type(exc)(f"{what}[{bad[0]}]: {exc}") from None


def decide(rows: pd.DataFrame, facts: pd.DataFrame, catalog: Catalog, moment: datetime) -> np.ndarray:
    """The reason code of each row (CHECK_COLUMNS), given what was found for it (`facts`: ASKED_COLUMNS,
    same index), at `moment`: the first refusal of `REFUSALS` (in order) whose condition holds, else
    `permitted`. Vector conditions, no loop; expiry classified once per distinct connection."""
    known = facts[facts["owner"].notna()].assign(id=rows["connection_id"], company_id=facts["owner"])
    usable = usable_connections(known.drop_duplicates("id"), catalog, moment)["id"]
    conditions = [
        ~facts["company_known"],
        facts["owner"] != rows["company_id"],
        facts["consent_id"].isna(),
        facts["consent_status"] != "active",
        ~facts["has_type"],
        ~facts["has_connection"],
        rows["data_type"].map(DATA_TYPE_SOURCE) != facts["source_type"],
        (facts["status"] != "Linked") | facts["deleted_at"].notna(),
        ~rows["connection_id"].isin(usable),
    ]
    codes = np.select([c.to_numpy(dtype=bool) for c in conditions], list(REFUSALS), "permitted")
    return codes.astype(object)
