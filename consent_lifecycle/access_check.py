"""Access checks in bulk: may each product read each data type on each connection of each company, and why
not (`consent_lifecycle.access_reasons`)? Set-wise: a few statements per call, then joins.

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

from consent_lifecycle.access_facts import AccessFacts, current_facts, replayed_facts
from consent_lifecycle.access_reasons import REFUSALS
from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import as_utc
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.ledger import ConsentError
from consent_lifecycle.ledger.scope import check_data_type_key
from consent_lifecycle.ledger.views import usable_connections

CHECK_COLUMNS = ["company_id", "product", "connection_id", "data_type"]


def check_access(engine: Engine, catalog: Catalog, checks: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """`checks` (CHECK_COLUMNS, optionally `at`: a row without one is decided at `now`) in the same order,
    plus `permitted` (bool) and `reason` (a code of `access_reasons.REASONS`).

    Raises (writing nothing) for the first row with a missing field, an unknown product (`CatalogError`)
    or an unknown Codat data type (`ConsentError`), naming the row's position and the value."""
    validate_checks(catalog, checks)
    now = as_utc(now)
    frame = checks.reset_index(drop=True)
    at = pd.to_datetime(frame["at"], utc=True) if "at" in frame else pd.Series(pd.NaT, index=frame.index)
    past = (at.notna() & (at != pd.Timestamp(now))).to_numpy()
    reasons = np.full(len(frame), "permitted", dtype=object)
    if not past.all():
        rows = frame[~past]
        with engine.connect() as db:
            facts = current_facts(db, rows)
        reasons[~past] = decide(rows, facts, catalog, now)
    if past.any():
        rows = frame[past].assign(at=at[past])
        for (company_id, moment), group in rows.groupby(["company_id", "at"], sort=False):
            when = moment.to_pydatetime()
            facts = replayed_facts(engine, catalog, company_id, when, group["connection_id"])
            reasons[group.index.to_numpy()] = decide(group, facts, catalog, when)
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


def decide(rows: pd.DataFrame, facts: AccessFacts, catalog: Catalog, moment: datetime) -> np.ndarray:
    """The reason code of each row (CHECK_COLUMNS), given the facts, at `moment`: the first refusal of
    `REFUSALS` (in order) whose condition holds, else `permitted`. Joins and vector conditions, no loop."""
    rows = rows[CHECK_COLUMNS].reset_index(drop=True)
    snapshot = facts.connections.set_index("id")
    connection = rows["connection_id"]
    status = connection.map(snapshot["status"])
    consents = facts.state.consents[["company_id", "product", "consent_id", "status"]]
    consent = rows.merge(consents.rename(columns={"status": "consent_status"}), on=["company_id", "product"], how="left")
    usable = usable_connections(facts.connections, catalog, moment)["id"]
    conditions = [
        ~rows["company_id"].isin(facts.companies["id"]),
        connection.map(snapshot["company_id"]) != rows["company_id"],
        consent["consent_id"].isna(),
        consent["consent_status"] != "active",
        ~pairs_in(consent[["consent_id", "data_type"]], facts.state.data_types),
        ~pairs_in(consent[["consent_id", "connection_id"]], facts.state.connections),
        rows["data_type"].map(DATA_TYPE_SOURCE) != connection.map(snapshot["source_type"]),
        (status != "Linked") | connection.map(snapshot["deleted_at"]).notna(),
        ~connection.isin(usable),
    ]
    codes = np.select([c.to_numpy(dtype=bool) for c in conditions], list(REFUSALS), "permitted")
    return codes.astype(object)


def pairs_in(left: pd.DataFrame, right: pd.DataFrame) -> pd.Series:
    """Whether each row of `left` (two columns) is a row of `right` (the same two columns)."""
    first, second = left.columns

    def keys(frame: pd.DataFrame) -> pd.Series:
        return frame[first].astype(str) + "\x00" + frame[second].astype(str)

    return keys(left).isin(set(keys(right)) if len(right) else set())
