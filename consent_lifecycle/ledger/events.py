"""The ledger's events: appended one at a time (never changed: the database refuses UPDATE and DELETE of
an event), read back in ledger order for `replay`, and listed for a company's history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import insert, select

from consent_lifecycle.clock import iso
from consent_lifecycle.db.bulk import select_rows
from consent_lifecycle.db.models import ConsentEvent
from consent_lifecycle.ledger.refusals import aware
from consent_lifecycle.ledger.replay import events_frame
from consent_lifecycle.ledger.scope import Scope


def append(
    db: Db,
    consent_id: str,
    company_id: str,
    product: str,
    event_type: str,
    scope: Scope,
    wording_version: str | None,
    actor: str,
    channel: str,
    reason: str | None,
    at: datetime,
    recorded_at: datetime | None,
) -> int:
    """Append one event (in the caller's transaction, which holds the company's lock); returns its id."""
    result = db.execute(
        _APPEND,
        {
            "consent_id": consent_id,
            "company_id": company_id,
            "product": product,
            "event_type": event_type,
            "data_types": sorted(scope.data_types),
            "connection_ids": sorted(scope.connections),
            "wording_version": wording_version,
            "actor": actor,
            "channel": channel,
            "reason": reason,
            "at": at,
            "recorded_at": aware(recorded_at) if recorded_at else at,
        },
    )
    return int(result.inserted_primary_key[0])


#: built once: every single write appends through it (building an ORM INSERT ... VALUES per call costs more
#: than running it)
_APPEND = insert(ConsentEvent.__table__)


def load_events(db: Db, company_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The ledger events of `company_ids` (all when None) in ledger order, as `replay` reads them."""
    query = select(
        ConsentEvent.id, ConsentEvent.consent_id, ConsentEvent.company_id, ConsentEvent.product,
        ConsentEvent.event_type, ConsentEvent.data_types, ConsentEvent.connection_ids, ConsentEvent.at,
    ).order_by(ConsentEvent.id)
    rows = select_rows(db, query, ConsentEvent.company_id, company_ids)
    return events_frame(rows if company_ids is None else sorted(rows))


def history(db: Db, company_id: str) -> list[dict[str, Any]]:
    """Every event of the company, in ledger order, as the CLI shows them."""
    rows = db.execute(
        select(ConsentEvent.__table__).where(ConsentEvent.company_id == company_id).order_by(ConsentEvent.id)
    )
    return [
        {
            "event_id": e.id,
            "consent_id": e.consent_id,
            "product": e.product,
            "event_type": e.event_type,
            "data_types": list(e.data_types),
            "connection_ids": list(e.connection_ids),
            "wording_version": e.wording_version,
            "actor": e.actor,
            "channel": e.channel,
            "reason": e.reason,
            "at": iso(e.at),
            "recorded_at": iso(e.recorded_at),
        }
        for e in rows
    ]
