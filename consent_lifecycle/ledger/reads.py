"""The ledger's reads: consents, entitlements, a company's page and history, and what a revocation or a
disconnection would delete (`Impact`).

Reads of the current state are SQL joins over the tables kept beside the events; reads "as of" a past time
replay the events alone. The functions below run in the caller's transaction: the writes call them after
`company_connections(..., lock=True)` has locked the company, so what they check is what they change.

Two speeds: frames (`current_state`, `snapshot`, `active_pairs`) for reads over many companies, and plain
rows from statements built once (`company_connections`, `consent_row`, `company_pairs`) for what a single
write or impact preview reads of one company, where pandas' fixed cost per operation would be most of its
time. `tests/test_ledger_write_path.py` holds the two equal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import Engine, bindparam, select

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import iso
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.db.bulk import select_frame
from consent_lifecycle.db.engine import lock_company
from consent_lifecycle.db.models import Company, Connection, Consent, ConsentConnection, ConsentDataType
from consent_lifecycle.ledger import events, refusals
from consent_lifecycle.ledger.errors import ConflictError, NotFoundError
from consent_lifecycle.ledger.impact import Impact, impact
from consent_lifecycle.ledger.refusals import aware
from consent_lifecycle.ledger.replay import ConsentState, replay
from consent_lifecycle.ledger.scope import ConnectionRow, check_known_connection, product_of, scope_pairs
from consent_lifecycle.ledger.views import ConsentView, entitlement_rows, usable_entitlements


class Reads:
    """`Ledger`'s reads (it supplies `engine` and `catalog`)."""

    engine: Engine
    catalog: Catalog

    def state(self, company_id: str | None = None, as_of: datetime | None = None) -> ConsentState:
        """Consents (with their data types and connections): current tables, or replayed as of a time."""
        with self.engine.connect() as db:
            if as_of is not None:
                company_ids = None if company_id is None else [company_id]
                return replay(events.load_events(db, company_ids), aware(as_of))
            return current_state(db, company_id)

    def entitlements(
        self, company_id: str | None = None, as_of: datetime | None = None, now: datetime | None = None
    ) -> pd.DataFrame:
        """(company_id, connection_id, data_type, products): what may be pulled, union over active consents,
        on connections the snapshot shows Linked and not deleted and, at `as_of` (or `now`) when one is
        given, not past their consent expiry (`consent_lifecycle.expiry`)."""
        state = self.state(company_id, as_of)
        with self.engine.connect() as db:
            connections = snapshot(db, company_id)
        moment = as_of or now
        return usable_entitlements(state, connections, self.catalog, aware(moment) if moment else None)

    def consents(self, company_id: str, as_of: datetime | None = None) -> list[ConsentView]:
        state = self.state(company_id, as_of)
        return ConsentView.from_state(state)

    def show(self, company_id: str, as_of: datetime | None = None, now: datetime | None = None) -> dict[str, Any]:
        with self.engine.connect() as db:
            company_snapshot(db, company_id)
        return {
            "company_id": company_id,
            "as_of": iso(aware(as_of)) if as_of else None,
            "consents": [view.as_dict() for view in self.consents(company_id, as_of)],
            "entitlements": entitlement_rows(self.entitlements(company_id, as_of, now)),
        }

    def require_company(self, company_id: str) -> None:
        """NotFoundError unless the company is in the snapshot (deleted at Codat or not: its records stay)."""
        with self.engine.connect() as db:
            _check_company(db, company_id, lock=False)

    def history(self, company_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as db:
            company_snapshot(db, company_id)
            return events.history(db, company_id)

    def coverage(self, db: Db, company_id: str) -> tuple[pd.DataFrame, list[str]]:
        """In the caller's transaction (which should hold `lock_company`): the company's active consent pairs
        (product, connection_id, data_type), whatever the connection's status, and its active consent ids.
        What a deletion checks: an active consent covers its data even while the connection is expired."""
        state = current_state(db, company_id)
        active = sorted(state.consents.loc[state.consents["status"] == "active", "consent_id"])
        return active_pairs(db, company_id), active

    def impact_of_revoke(self, company_id: str, product: str, at: datetime) -> Impact:
        product_of(self.catalog, product)
        with self.engine.connect() as db:
            company_connections(db, company_id)
            active_consent(db, company_id, product, "revoke")
            return revoke_impact(db, self.catalog, company_id, product, aware(at))

    def impact_of_disconnect(self, company_id: str, connection_id: str, at: datetime) -> Impact:
        with self.engine.connect() as db:
            connections = company_connections(db, company_id)
            check_known_connection(company_id, connection_id, connections)
            return disconnect_impact(db, self.catalog, company_id, connection_id, aware(at))


def company_snapshot(db: Db, company_id: str, *, lock: bool = False) -> pd.DataFrame:
    """Check the company is in the snapshot and return its connections; `lock` it first for a write."""
    _check_company(db, company_id, lock)
    return snapshot(db, company_id)


def company_connections(db: Db, company_id: str, *, lock: bool = False) -> list[ConnectionRow]:
    """`company_snapshot` for one company's write or preview: the same check (and lock), the connections
    as plain rows (id, source_type, status, deleted_at) from one SELECT, no frame."""
    _check_company(db, company_id, lock)
    return [ConnectionRow(*row) for row in db.execute(_COMPANY_CONNECTIONS, {"company_id": company_id})]


# the one-company reads of every write, built once (a write pays for building a statement otherwise)
_COMPANY = select(Company.id, Company.deleted_at).where(Company.id == bindparam("company_id"))
_COMPANY_CONNECTIONS = select(Connection.id, Connection.source_type, Connection.status, Connection.deleted_at).where(
    Connection.company_id == bindparam("company_id")
)
_CONSENT_ROW = select(Consent.__table__).where(
    Consent.company_id == bindparam("company_id"), Consent.product == bindparam("product")
)
_COMPANY_PAIRS = (
    select(Consent.product, ConsentConnection.connection_id, Connection.source_type, ConsentDataType.data_type)
    .join(ConsentConnection, ConsentConnection.consent_id == Consent.id)
    .join(
        Connection,
        (Connection.id == ConsentConnection.connection_id) & (Connection.company_id == bindparam("company_id")),
    )
    .join(ConsentDataType, ConsentDataType.consent_id == Consent.id)
    .where(Consent.company_id == bindparam("company_id"), Consent.status == "active")
)


def _check_company(db: Db, company_id: str, lock: bool) -> None:
    if lock:
        lock_company(db, company_id)
    found = db.execute(_COMPANY, {"company_id": company_id}).one_or_none()
    if found is None:
        raise NotFoundError(refusals.unknown_company(company_id))
    if found.deleted_at is not None and lock:  # its history stays readable
        raise ConflictError(refusals.company_deleted(company_id, found.deleted_at))


def snapshot(db: Db, company_id: str | None) -> pd.DataFrame:
    """The connections (with what the expiry model reads) of one company, or of all."""
    columns = [
        Connection.id, Connection.company_id, Connection.source_type, Connection.status, Connection.deleted_at,
        Company.jurisdiction, Connection.created_at, Connection.last_sync_at, Connection.last_authorized_at,
        Connection.last_reconfirmed_at,
    ]
    query = select(*columns).join(Company, Company.id == Connection.company_id)
    if company_id is not None:
        query = query.where(Connection.company_id == company_id)
    frame = pd.DataFrame.from_records(db.execute(query).all(), columns=[c.key for c in columns])
    for column in ("deleted_at", "created_at", "last_sync_at", "last_authorized_at", "last_reconfirmed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def consent_row(db: Db, company_id: str, product: str) -> dict[str, Any] | None:
    """The company's consent to `product` as its current-state row, or None when it was never granted."""
    row = db.execute(_CONSENT_ROW, {"company_id": company_id, "product": product}).mappings().one_or_none()
    return dict(row) if row is not None else None


def active_consent(db: Db, company_id: str, product: str, action: str) -> dict[str, Any]:
    """`consent_row`, refused (naming `action`) unless the consent is active."""
    current = consent_row(db, company_id, product)
    if current is None or current["status"] != "active":
        raise ConflictError(refusals.not_active(action, product, company_id, revoked=current is not None))
    return current


def current_state(db: Db, company_id: str | None) -> ConsentState:
    """The consents of one company (or all) as the current-state tables hold them."""
    consents = select(
        Consent.id.label("consent_id"),
        Consent.company_id,
        Consent.product,
        Consent.status,
        Consent.granted_at,
        Consent.revoked_at,
        Consent.updated_at,
        Consent.wording_version,
        Consent.actor,
        Consent.channel,
    )
    types = select(ConsentDataType.consent_id, ConsentDataType.data_type).join(
        Consent, Consent.id == ConsentDataType.consent_id
    )
    conns = select(ConsentConnection.consent_id, ConsentConnection.connection_id).join(
        Consent, Consent.id == ConsentConnection.consent_id
    )
    if company_id is not None:
        consents = consents.where(Consent.company_id == company_id)
        types = types.where(Consent.company_id == company_id)
        conns = conns.where(Consent.company_id == company_id)
    return ConsentState(
        consents=select_frame(db, consents), data_types=select_frame(db, types), connections=select_frame(db, conns)
    )


def active_pairs(db: Db, company_id: str) -> pd.DataFrame:
    """The company's active consent pairs (product, connection_id, data_type), whatever the status."""
    state = current_state(db, company_id)
    active = state.consents[state.consents["status"] == "active"][["consent_id", "product"]]
    connections = state.connections.merge(active, on="consent_id")
    return scope_pairs(state.data_types, connections, snapshot(db, company_id))[
        ["product", "connection_id", "data_type"]
    ]


def company_pairs(db: Db, company_id: str) -> list[tuple[str, str, str]]:
    """`active_pairs` as plain tuples, for one company's write or preview: one SELECT joining the active
    consents' connections (the company's, whatever their status) and data types, source types matched."""
    return [
        (product, connection_id, data_type)
        for product, connection_id, source_type, data_type in db.execute(_COMPANY_PAIRS, {"company_id": company_id})
        if DATA_TYPE_SOURCE.get(data_type) == source_type
    ]


def revoke_impact(db: Db, catalog: Catalog, company_id: str, product: str, at: datetime) -> Impact:
    """What revoking `product` deletes and keeps: the same for the preview and for `Ledger.revoke`."""
    pairs = company_pairs(db, company_id)
    return impact(company_id, pairs, lambda pair: pair[0] == product, _retention_days(catalog), at, product=product)


def disconnect_impact(db: Db, catalog: Catalog, company_id: str, connection_id: str, at: datetime) -> Impact:
    """What removing `connection_id` deletes and keeps: the same for the preview and `Ledger.disconnect`."""
    pairs = company_pairs(db, company_id)
    return impact(
        company_id,
        pairs,
        lambda pair: pair[1] == connection_id,
        _retention_days(catalog),
        at,
        connection_id=connection_id,
    )


def _retention_days(catalog: Catalog) -> dict[str, int]:
    return {key: p.retention_days for key, p in catalog.products.items()}
