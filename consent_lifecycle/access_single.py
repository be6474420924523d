"""One access check, fast: the call a product makes before each read, through the API.

`check_one` answers what `access_check.check_access` answers for one row (the tests hold them equal), with
one compiled SQL statement and plain Python instead of frames: pandas' per-call overhead is several times
the whole budget of a single check. The expiry test is the one `expiry.classify` applies, through the same
policy (`Catalog.policy_for`, `ExpiryPolicy.expires_at`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import Engine, and_, bindparam, exists, select

from consent_lifecycle.access_check import check_access
from consent_lifecycle.access_reasons import explain
from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import as_utc
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.db.models import Company, Connection, Consent, ConsentConnection, ConsentDataType
from consent_lifecycle.ledger.scope import check_data_type_key


class Decision(NamedTuple):
    permitted: bool
    #: a code of `access_reasons.REASONS`
    reason: str
    #: the code's sentence, filled in
    message: str


#: the company (one row, or none), with its named connection, its consent to the product and whether that
#: consent covers the data type and the connection: one statement, compiled once
FACTS = (
    select(
        Company.jurisdiction,
        Connection.company_id.label("owner"),
        Connection.source_type,
        Connection.status,
        Connection.deleted_at,
        Connection.created_at,
        Connection.last_authorized_at,
        Connection.last_reconfirmed_at,
        Consent.status.label("consent_status"),
        exists()
        .where(ConsentDataType.consent_id == Consent.id, ConsentDataType.data_type == bindparam("data_type"))
        .label("has_type"),
        exists()
        .where(
            ConsentConnection.consent_id == Consent.id,
            ConsentConnection.connection_id == bindparam("connection_id"),
        )
        .label("has_connection"),
    )
    .select_from(Company)
    .outerjoin(Connection, Connection.id == bindparam("connection_id"))
    .outerjoin(Consent, and_(Consent.company_id == Company.id, Consent.product == bindparam("product")))
    .where(Company.id == bindparam("company_id"))
)


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
        with read_connection(engine) as db:
            facts = db.execute(FACTS, names).one_or_none()
        code = reason_of(facts, catalog, company_id, data_type, as_utc(now))
    return Decision(code == "permitted", code, explain(code, **names))


def read_connection(engine: Engine) -> Db:
    """A connection for one statement. On PostgreSQL in autocommit: one statement sees one consistent
    snapshot anyway, and the BEGIN and ROLLBACK round trips were half a check's time. (On SQLite, switching
    the isolation level per checkout costs more than the transaction does.)"""
    db = engine.connect()
    return db.execution_options(isolation_level="AUTOCOMMIT") if engine.dialect.name == "postgresql" else db


def reason_of(facts: Any, catalog: Catalog, company_id: str, data_type: str, moment: datetime) -> str:
    """The reason code from FACTS' row (None: no such company), in `access_reasons.REASONS`' order."""
    if facts is None:
        return "unknown_company"
    if facts.owner != company_id:
        return "connection_not_of_company"
    if facts.consent_status is None:
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


def expired(connection: Any, catalog: Catalog, moment: datetime) -> bool:
    """Whether a Linked connection's consent has expired at `moment`, as `expiry.classify` judges it: its
    policy's expiry (authorization, or creation when never seen authorized, and reconfirmation under a
    reconfirmation policy, plus the period) is at or before `moment`; never without a policy."""
    policy = catalog.policy_for(connection.source_type, connection.jurisdiction)
    if policy is None:
        return False
    authorized = as_utc(connection.last_authorized_at or connection.created_at)
    reconfirmed = connection.last_reconfirmed_at
    expires_at = policy.expires_at(authorized, None if reconfirmed is None else as_utc(reconfirmed))
    return expires_at is not None and expires_at <= moment
