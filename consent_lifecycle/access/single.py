"""One access check, fast: the call a product makes before each read, through the API.

`check_one` answers what `access.check.check_access` answers for one row (the tests hold them equal): the
same statement (`access.facts.ASKED_SQL`, for one row, sent as plain SQL), then plain Python instead of
frames: pandas' per-call overhead is several times the whole budget of a single check. The expiry test is the one `expiry.classify` applies, through the same
policy (`Catalog.policy_for`, `ExpiryPolicy.expires_at`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import pandas as pd
from sqlalchemy import Engine

from consent_lifecycle.access.check import check_access
from consent_lifecycle.access.facts import ASKED_SQL
from consent_lifecycle.access.reasons import explain
from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import as_utc
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.db.engine import statement_connection
from consent_lifecycle.ledger.scope import check_data_type_key


class Decision(NamedTuple):
    permitted: bool
    #: a code of `access.reasons.REASONS`
    reason: str
    #: the code's sentence, filled in
    message: str


class Facts(NamedTuple):
    """One check's row of `access.facts.ASKED_SQL` after its position (`ASKED_COLUMNS`, in order; times as
    the driver gives them: text on SQLite)."""

    company_known: bool
    consent_id: str | None
    consent_status: str | None
    has_type: bool
    has_connection: bool
    owner: str | None
    source_type: str | None
    status: str | None
    jurisdiction: str | None
    created_at: Any
    last_sync_at: Any
    last_authorized_at: Any
    last_reconfirmed_at: Any
    deleted_at: Any


#: the batch's statement for one check, per driver parameter style
ONE_CHECK = {
    style: ASKED_SQL.format(checks=f"VALUES ({', '.join([mark] * 5)})")
    for style, mark in (("qmark", "?"), ("pyformat", "%s"), ("format", "%s"))
}


def check_one(
    engine: Engine,
    catalog: Catalog,
    company_id: str,
    product: str,
    connection_id: str,
    data_type: str,
    *,
    now: datetime,
    at: datetime | None = None,
) -> Decision:
    """May `product` read `data_type` on `connection_id` of `company_id` at `at` (None: `now`)?

    An unknown product (`CatalogError`) or data type (`ConsentError`) is an error naming it. A check at a
    time other than `now` replays the ledger (`check_access`'s past path)."""
    catalog.product(product)
    check_data_type_key(data_type)
    names = {"company_id": company_id, "product": product, "connection_id": connection_id, "data_type": data_type}
    if at is not None and as_utc(at) != as_utc(now):
        row = check_access(engine, catalog, pd.DataFrame([{**names, "at": as_utc(at)}]), now).iloc[0]
        code = row["reason"]
    else:
        with statement_connection(engine) as db:
            row = db.exec_driver_sql(ONE_CHECK[db.dialect.paramstyle], (0, *names.values())).one()
        code = reason_of(Facts(*row[1:]), catalog, company_id, data_type, as_utc(now))
    return Decision(code == "permitted", code, explain(code, **names))


def reason_of(facts: Facts, catalog: Catalog, company_id: str, data_type: str, moment: datetime) -> str:
    """The reason code, in `access.reasons.REASONS`' order, as `access.check.decide` finds it for a batch."""
    if not facts.company_known:
        return "unknown_company"
    if facts.owner != company_id:
        return "connection_not_of_company"
    if facts.consent_id is None:
        return "no_consent"
    if facts.consent_status != "active":
        return "consent_revoked"
    if not facts.has_type:
        return "data_type_not_consented"
    if not facts.has_connection:
        return "connection_not_consented"
    if DATA_TYPE_SOURCE[data_type] != facts.source_type:
        return "data_type_not_on_connection"
    if facts.status != "Linked" or facts.deleted_at is not None:
        return "connection_not_linked"
    if expired(facts, catalog, moment):
        return "connection_expired"
    return "permitted"


def expired(connection: Facts, catalog: Catalog, moment: datetime) -> bool:
    """Whether a Linked connection's consent has expired at `moment`, as `expiry.classify` judges it: its
    policy's expiry (authorization, or creation when never seen authorized, and reconfirmation under a
    reconfirmation policy, plus the period) is at or before `moment`; never without a policy."""
    policy = catalog.policy_for(connection.source_type, connection.jurisdiction)
    if policy is None:
        return False
    authorized = time_of(connection.last_authorized_at) or time_of(connection.created_at)
    expires_at = policy.expires_at(authorized, time_of(connection.last_reconfirmed_at))
    return expires_at is not None and expires_at <= moment


def time_of(value: datetime | str | None) -> datetime | None:
    """A time as the driver gives it (SQLite: the stored text, naive UTC) as an aware UTC datetime."""
    if value is None:
        return None
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)
