"""What an access check reads, set-wise: the companies and connections it names (the snapshot, as of now)
and the consents of those companies, either from the current-state tables (a check at `now`) or replayed
from the ledger as of a past time.

A few statements per call, each restricted to the keys the checks name (chunked `IN` lists), never one
per check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import Engine, select

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.db.bulk import select_frame
from consent_lifecycle.db.models import Company, Connection, Consent, ConsentConnection, ConsentDataType
from consent_lifecycle.expiry import INPUT_COLUMNS
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.ledger.replay import ConsentState

#: connections as the checks read them: what `classify` reads plus the deletion mark
CONNECTION_COLUMNS = [*INPUT_COLUMNS, "deleted_at"]
TIME_COLUMNS = ("created_at", "last_sync_at", "last_authorized_at", "last_reconfirmed_at", "deleted_at")


@dataclass(frozen=True)
class AccessFacts:
    """companies: id; connections: CONNECTION_COLUMNS; state: the companies' consents (its `consents`
    with at least consent_id, company_id, product, status)."""

    companies: pd.DataFrame
    connections: pd.DataFrame
    state: ConsentState


def distinct(values: Iterable[str]) -> list[str]:
    """The distinct values, sorted (a Series without iterating it value by value)."""
    return sorted(pd.unique(pd.Series(values, dtype=object)).tolist())


def snapshot_of(db: Db, company_ids: Iterable[str], connection_ids: Iterable[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The named companies (id) and the named connections (CONNECTION_COLUMNS, times as UTC timestamps)."""
    companies = select_frame(db, select(Company.id), Company.id, distinct(company_ids))
    query = select(
        Connection.id, Connection.company_id, Connection.source_type, Connection.status, Company.jurisdiction,
        Connection.created_at, Connection.last_sync_at, Connection.last_authorized_at,
        Connection.last_reconfirmed_at, Connection.deleted_at,
    ).join(Company, Company.id == Connection.company_id)
    connections = select_frame(db, query, Connection.id, distinct(connection_ids))
    for column in TIME_COLUMNS:
        connections[column] = pd.to_datetime(connections[column], utc=True)
    return companies, connections[CONNECTION_COLUMNS]


def current_facts(db: Db, checks: pd.DataFrame) -> AccessFacts:
    """The facts of `checks` (company_id, product, connection_id, data_type) at now, from the current-state
    tables: the consents of the named companies to the named products, and of their data types and
    connections only those some check names (not every type of every consent)."""
    companies, products = distinct(checks["company_id"]), distinct(checks["product"])
    consents = select(Consent.id.label("consent_id"), Consent.company_id, Consent.product, Consent.status)
    types = (
        select(ConsentDataType.consent_id, ConsentDataType.data_type)
        .join(Consent, Consent.id == ConsentDataType.consent_id)
        .where(Consent.product.in_(products), ConsentDataType.data_type.in_(distinct(checks["data_type"])))
    )
    conns = (
        select(ConsentConnection.consent_id, ConsentConnection.connection_id)
        .join(Consent, Consent.id == ConsentConnection.consent_id)
        .where(Consent.product.in_(products))
    )
    state = ConsentState(
        consents=select_frame(db, consents.where(Consent.product.in_(products)), Consent.company_id, companies),
        data_types=select_frame(db, types, Consent.company_id, companies),
        connections=select_frame(
            db, conns, ConsentConnection.connection_id, distinct(checks["connection_id"])
        ),
    )
    return AccessFacts(*snapshot_of(db, companies, checks["connection_id"]), state)


def replayed_facts(
    engine: Engine, catalog: Catalog, company_id: str, at: datetime, connection_ids: Iterable[str]
) -> AccessFacts:
    """The facts of a check at a past `at`: the company's consents replayed from the ledger as of `at` (as
    `Ledger.entitlements(company_id, as_of=at)` sees them), beside the snapshot of now."""
    state = Ledger(engine, catalog).state(company_id, as_of=at)
    with engine.connect() as db:
        companies, connections = snapshot_of(db, [company_id], connection_ids)
    return AccessFacts(companies, connections, state)
