"""The ledger's single writes: grant, extend, reconfirm, revoke, disconnect, each one transaction that
appends its events and moves the current state beside them.

Every write locks the company first (`lock_company`, through `company_connections(..., lock=True)`), so
concurrent grants, revokes and deletions for one company happen in some serial order, and checks what it
is asked against the state it finds under that lock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection as Db
from sqlalchemy import Engine, bindparam, delete, insert, select, update

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import as_utc
from consent_lifecycle.db.models import Connection, Consent, ConsentConnection, ConsentDataType
from consent_lifecycle.ledger import events, refusals
from consent_lifecycle.ledger.errors import ConflictError, ConsentError
from consent_lifecycle.ledger.impact import Impact
from consent_lifecycle.ledger.reads import (
    active_consent,
    company_connections,
    consent_row,
    disconnect_impact,
    revoke_impact,
)
from consent_lifecycle.ledger.refusals import aware
from consent_lifecycle.ledger.scope import (
    ConnectionRow,
    Scope,
    check_channel,
    check_known_connection,
    product_of,
    resolve_extension,
    resolve_grant,
)
from consent_lifecycle.ledger.views import ConsentView

logger = logging.getLogger(__name__)

#: called with ("revoked" | "disconnected", what it deletes and keeps) once such a change has committed
OnChange = Callable[[str, Impact], None]


class Writes:
    """`Ledger`'s single writes (it supplies `engine`, `catalog` and `on_change`)."""

    engine: Engine
    catalog: Catalog
    on_change: OnChange | None

    def grant(
        self,
        company_id: str,
        product: str,
        *,
        connections: list[str] | None = None,
        data_types: list[str] | None = None,
        wording_version: str,
        actor: str,
        channel: str,
        at: datetime,
        recorded_at: datetime | None = None,
    ) -> ConsentView:
        """Record a customer's consent to `product` (GDPR Art. 7(1): who, what, which wording, when)."""
        spec = product_of(self.catalog, product)
        check_channel(channel)
        at = aware(at)
        if not wording_version:
            raise ConsentError(refusals.NO_WORDING_VERSION)
        with self.engine.begin() as db:
            snapshot = company_connections(db, company_id, lock=True)
            current = consent_row(db, company_id, product)
            if current is not None and current["status"] == "active":
                raise ConflictError(refusals.already_granted(product, company_id))
            _not_before(current, at, company_id, product)
            scope = resolve_grant(spec, company_id, snapshot, data_types, connections)
            consent_id = current["id"] if current is not None else str(uuid.uuid4())
            event_id = events.append(
                db,
                consent_id,
                company_id,
                product,
                "granted",
                scope,
                wording_version,
                actor,
                channel,
                None,
                at,
                recorded_at,
            )
            values = {
                "status": "active",
                "wording_version": wording_version,
                "actor": actor,
                "channel": channel,
                "granted_at": at,
                "updated_at": at,
                "revoked_at": None,
                "last_event_id": event_id,
            }
            if current is None:
                db.execute(
                    insert(Consent).values(id=consent_id, company_id=company_id, product=product, **values)
                )
            else:
                db.execute(update(Consent).where(Consent.id == consent_id).values(**values))
                db.execute(delete(ConsentDataType).where(ConsentDataType.consent_id == consent_id))
                db.execute(delete(ConsentConnection).where(ConsentConnection.consent_id == consent_id))
            _add_scope(db, consent_id, scope)
            return _view({"id": consent_id, "company_id": company_id, "product": product, **values}, scope)

    def extend(
        self,
        company_id: str,
        product: str,
        *,
        connections: list[str] | None = None,
        data_types: list[str] | None = None,
        wording_version: str | None = None,
        actor: str,
        channel: str,
        at: datetime,
        recorded_at: datetime | None = None,
    ) -> ConsentView:
        """ "Confirm I'm happy to share additional data": more data types or connections, no re-authorization."""
        spec = product_of(self.catalog, product)
        check_channel(channel)
        at = aware(at)
        with self.engine.begin() as db:
            snapshot, current, scope = _active_under_lock(db, company_id, product, "extend", at)
            added = resolve_extension(spec, company_id, scope, snapshot, data_types, connections)
            wording = wording_version or current["wording_version"]
            _record(
                db,
                current["id"],
                company_id,
                product,
                "extended",
                added,
                wording_version=wording,
                actor=actor,
                channel=channel,
                at=at,
                recorded_at=recorded_at,
            )
            _add_scope(db, current["id"], added)
            whole = Scope(scope.data_types | added.data_types, scope.connections | added.connections)
            return _view({**current, "updated_at": at}, whole)

    def reconfirm(
        self,
        company_id: str,
        product: str,
        *,
        actor: str,
        channel: str,
        at: datetime,
        recorded_at: datetime | None = None,
    ) -> ConsentView:
        """The Open Banking reconfirmation: the consent stands, and the connections' expiry clock restarts."""
        product_of(self.catalog, product)
        check_channel(channel)
        at = aware(at)
        with self.engine.begin() as db:
            _, current, scope = _active_under_lock(db, company_id, product, "reconfirm", at)
            _record(
                db,
                current["id"],
                company_id,
                product,
                "reconfirmed",
                Scope(frozenset(), frozenset()),
                wording_version=current["wording_version"],
                actor=actor,
                channel=channel,
                at=at,
                recorded_at=recorded_at,
            )
            if scope.connections:
                db.execute(
                    update(Connection)
                    .where(Connection.id.in_(sorted(scope.connections)))
                    .values(last_reconfirmed_at=at)
                )
            return _view({**current, "updated_at": at}, scope)

    def revoke(
        self,
        company_id: str,
        product: str,
        *,
        reason: str,
        actor: str,
        channel: str,
        at: datetime,
        recorded_at: datetime | None = None,
    ) -> Impact:
        """Withdraw consent to `product` (as easy as giving it); returns what that deletes and keeps."""
        product_of(self.catalog, product)
        check_channel(channel)
        at = aware(at)
        with self.engine.begin() as db:
            _, current, scope = _active_under_lock(db, company_id, product, "revoke", at)
            effect = revoke_impact(db, self.catalog, company_id, product, at)
            _record(
                db,
                current["id"],
                company_id,
                product,
                "revoked",
                scope,
                wording_version=current["wording_version"],
                actor=actor,
                channel=channel,
                reason=reason,
                at=at,
                recorded_at=recorded_at,
                status="revoked",
                revoked_at=at,
            )
        self._announce("revoked", effect)
        return effect

    def disconnect(
        self,
        company_id: str,
        connection_id: str,
        *,
        actor: str,
        channel: str,
        at: datetime,
        reason: str | None = None,
        recorded_at: datetime | None = None,
    ) -> Impact:
        """The customer removes a connection: every product using it loses it, in one transaction."""
        check_channel(channel)
        at = aware(at)
        with self.engine.begin() as db:
            snapshot = company_connections(db, company_id, lock=True)
            check_known_connection(company_id, connection_id, snapshot)
            users = db.execute(
                select(Consent.id, Consent.product, Consent.wording_version, Consent.updated_at)
                .join(ConsentConnection, ConsentConnection.consent_id == Consent.id)
                .where(
                    Consent.company_id == company_id,
                    Consent.status == "active",
                    ConsentConnection.connection_id == connection_id,
                )
                .order_by(Consent.product)
            ).all()
            if not users:
                raise ConflictError(
                    f"no active consent of company {company_id} uses connection {connection_id}"
                )
            for user in users:
                _not_before({"updated_at": user.updated_at}, at, company_id, user.product)
            effect = disconnect_impact(db, self.catalog, company_id, connection_id, at)
            removed = Scope(frozenset(), frozenset({connection_id}))
            for user in users:
                _record(
                    db,
                    user.id,
                    company_id,
                    user.product,
                    "disconnected",
                    removed,
                    wording_version=user.wording_version,
                    actor=actor,
                    channel=channel,
                    reason=reason,
                    at=at,
                    recorded_at=recorded_at,
                )
            db.execute(
                delete(ConsentConnection).where(
                    ConsentConnection.consent_id.in_([u.id for u in users]),
                    ConsentConnection.connection_id == connection_id,
                )
            )
        self._announce("disconnected", effect)
        return effect

    def _announce(self, change: str, effect: Impact) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(change, effect)
        except Exception:  # the ledger is the record; a listener failing does not undo or fail the change
            logger.warning("could not announce %s of company %s", change, effect.company_id, exc_info=True)


def _active_under_lock(
    db: Db, company_id: str, product: str, action: str, at: datetime
) -> tuple[list[ConnectionRow], dict[str, Any], Scope]:
    """Lock the company, then its snapshot connections, its consent to `product` and that consent's scope,
    refused (naming `action`) unless the consent is active and `at` is not before its last event."""
    snapshot = company_connections(db, company_id, lock=True)
    current = active_consent(db, company_id, product, action)
    _not_before(current, at, company_id, product)
    return snapshot, current, _scope_of(db, current["id"])


_SCOPE_TYPES = select(ConsentDataType.data_type).where(ConsentDataType.consent_id == bindparam("consent_id"))
_SCOPE_CONNECTIONS = select(ConsentConnection.connection_id).where(
    ConsentConnection.consent_id == bindparam("consent_id")
)


def _scope_of(db: Db, consent_id: str) -> Scope:
    types = db.execute(_SCOPE_TYPES, {"consent_id": consent_id}).scalars()
    conns = db.execute(_SCOPE_CONNECTIONS, {"consent_id": consent_id}).scalars()
    return Scope(frozenset(types), frozenset(conns))


def _add_scope(db: Db, consent_id: str, scope: Scope) -> None:
    if scope.data_types:
        db.execute(
            insert(ConsentDataType),
            [{"consent_id": consent_id, "data_type": d} for d in sorted(scope.data_types)],
        )
    if scope.connections:
        db.execute(
            insert(ConsentConnection),
            [{"consent_id": consent_id, "connection_id": c} for c in sorted(scope.connections)],
        )


def _record(
    db: Db,
    consent_id: str,
    company_id: str,
    product: str,
    event_type: str,
    scope: Scope,
    *,
    wording_version: str | None,
    actor: str,
    channel: str,
    at: datetime,
    recorded_at: datetime | None,
    reason: str | None = None,
    **consent: Any,
) -> int:
    """Append an event to an existing consent and move its current state along (plus `consent` values)."""
    event_id = events.append(
        db,
        consent_id,
        company_id,
        product,
        event_type,
        scope,
        wording_version,
        actor,
        channel,
        reason,
        at,
        recorded_at,
    )
    db.execute(_MOVE_CONSENT, {"b_id": consent_id, "updated_at": at, "last_event_id": event_id, **consent})
    return event_id


#: UPDATE consents SET <the columns given> WHERE id = :b_id, built once
_MOVE_CONSENT = update(Consent.__table__).where(Consent.__table__.c.id == bindparam("b_id"))


def _view(consent: dict[str, Any], scope: Scope) -> ConsentView:
    """The consent as `Ledger.consents` reads it back, from the row just written (`consent`: its columns,
    `id` included) and its whole scope, without reading the company's state again."""
    return ConsentView(
        consent_id=consent["id"],
        company_id=consent["company_id"],
        product=consent["product"],
        status=consent["status"],
        data_types=tuple(sorted(scope.data_types)),
        connections=tuple(sorted(scope.connections)),
        granted_at=as_utc(consent["granted_at"]),
        revoked_at=None if consent["revoked_at"] is None else as_utc(consent["revoked_at"]),
        updated_at=as_utc(consent["updated_at"]),
        wording_version=consent["wording_version"],
        actor=consent["actor"],
        channel=consent["channel"],
    )


def _not_before(current: dict[str, Any] | None, at: datetime, company_id: str, product: str) -> None:
    """Refuse an event dated before the consent's last one: the ledger is a history, not a draft."""
    if current is None:
        return
    last = as_utc(current["updated_at"])
    if at < last:
        raise ConflictError(refusals.earlier_than_last(at, product, company_id, last))
