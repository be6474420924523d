"""Retention's store: deletion items (planned, held, cancelled, done, failed) and their receipts.

`plan` opens, cancels, holds and releases items, set-wise and idempotently; the due items are counted
and then read in keyset pages (`count_due`, `due_batch`) for `retention.execute` to delete one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import Engine, and_, func, or_, select, update

from consent_lifecycle.batching import batched
from consent_lifecycle.catalog import Catalog
from consent_lifecycle.db.bulk import insert_new, plain_rows, select_frame, select_rows
from consent_lifecycle.db.models import Connection, DeletionItem, DeletionReceipt, LegalHold
from consent_lifecycle.ledger import load_events
from consent_lifecycle.reconcile.intervals import entitlement_intervals
from consent_lifecycle.retention.plan import PLANNER_REASON_PREFIX, cancelled, held, plan_deletions

OPEN = ("planned", "held")
#: rows of each item list `plan` returns (the run's artifacts show at most this many)
ARTIFACT_ROWS = 1000
ITEM_COLUMNS = [
    "id",
    "key",
    "company_id",
    "connection_id",
    "data_type",
    "scope",
    "reason",
    "due_at",
    "status",
]


@dataclass(frozen=True)
class Plan:
    """What planning did: how many items it opened, cancelled and holds, and the head of each list
    (`ARTIFACT_ROWS` rows at most, ITEM_COLUMNS each; the planned ones soonest due first)."""

    planned_new: int
    cancelled: int
    held: int
    cancelled_items: list[dict[str, Any]]
    held_items: list[dict[str, Any]]
    planned_items: list[dict[str, Any]]
    #: every planned item (in scope), of which `planned_items` is the head
    planned_total: int = 0


def plan(
    engine: Engine, catalog: Catalog, now: datetime, company_ids: Sequence[str] | None = None
) -> Plan:
    """Open new items, cancel those covered again, hold or release by legal holds: idempotent.

    Set-based and bounded: of the open items only those a decision is about are read (the planner's own, to
    cancel; those of companies under a hold, or held now, to hold or release), never every open item (the
    reconciliation's `unconsented_pull` items can be hundreds of thousands). The lists returned are at most
    `ARTIFACT_ROWS` long each; the counts are whole.
    """
    with engine.begin() as db:
        events = load_events(db, company_ids)
        events = events[events["at"] <= pd.Timestamp(now)]
        connections = connections_frame(db, company_ids)
        planned = plan_deletions(entitlement_intervals(events, connections), catalog, now)
        rows = [
            {**r, "status": "planned", "plan_version": catalog.version, "created_at": now, "updated_at": now}
            for r in plain_rows(planned.drop(columns="ended_at"))
        ]
        new = insert_new(db, DeletionItem.__table__, rows, key="key")
        gone = cancelled(_planner_items(db, company_ids), planned)
        set_status(db, list(gone["id"]), "cancelled", now)
        # only an item of a company under an unreleased hold can be held; one held now may be released
        items = _hold_candidates(db, company_ids)
        on_hold = held(items, holds_frame(db, company_ids), connections)
        set_status(db, list(items.loc[on_hold & (items["status"] == "planned"), "id"]), "held", now)
        set_status(db, list(items.loc[~on_hold & (items["status"] == "held"), "id"]), "planned", now)
        soonest = _items(
            db, company_ids, ("planned",), order=(DeletionItem.due_at, DeletionItem.id), limit=ARTIFACT_ROWS
        )  # per chunk of company_ids: merged below
        soonest = soonest.sort_values(["due_at", "id"], kind="stable").head(ARTIFACT_ROWS)
        total = _count(db, company_ids, "planned")
    return Plan(
        planned_new=new,
        cancelled=len(gone),
        held=int(on_hold.sum()),
        cancelled_items=plain_rows(gone[ITEM_COLUMNS].head(ARTIFACT_ROWS)),
        held_items=plain_rows(items.loc[on_hold, ITEM_COLUMNS].head(ARTIFACT_ROWS)),
        planned_items=plain_rows(soonest),
        planned_total=total,
    )


def due_items(
    engine: Engine, now: datetime, limit: int | None = None, company_ids: Sequence[str] | None = None
) -> list[int]:
    """Ids of planned items due at `now`, oldest due first."""
    query = select(DeletionItem.id).where(DeletionItem.status == "planned", DeletionItem.due_at <= now)
    if company_ids is not None:
        query = query.where(DeletionItem.company_id.in_(list(company_ids)))
    query = query.order_by(DeletionItem.due_at, DeletionItem.id).limit(limit)
    with engine.connect() as db:
        return list(db.scalars(query))


@dataclass(frozen=True)
class Due:
    """How many planned items are due at `now`, and the highest id among them (None when none): the run
    executes those, batch by batch (`due_batch`), and no item planned after it counted them."""

    count: int
    max_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_due(engine: Engine, now: datetime, company_ids: Sequence[str] | None = None) -> Due:
    """`Due` at `now`: one aggregate query, no ids read."""
    query = select(func.count(), func.max(DeletionItem.id)).where(
        DeletionItem.status == "planned", DeletionItem.due_at <= now
    )
    if company_ids is not None:
        query = query.where(DeletionItem.company_id.in_(list(company_ids)))
    with engine.connect() as db:
        count, max_id = db.execute(query).one()
    return Due(int(count), max_id)


def due_counts(engine: Engine, now: datetime, company_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Planned items due at `now` counted by (company_id, reason, data_type): aggregates, not the items."""
    query = (
        select(DeletionItem.company_id, DeletionItem.reason, DeletionItem.data_type, func.count().label("items"))
        .where(DeletionItem.status == "planned", DeletionItem.due_at <= now)
        .group_by(DeletionItem.company_id, DeletionItem.reason, DeletionItem.data_type)
    )
    with engine.connect() as db:
        return select_frame(db, query, DeletionItem.company_id, company_ids)


def due_batch(
    engine: Engine,
    now: datetime,
    *,
    limit: int,
    max_id: int | None,
    after: tuple[datetime, int] | None = None,
    company_ids: Sequence[str] | None = None,
) -> list[tuple[int, datetime]]:
    """The next `limit` planned items due at `now` (id, due_at), oldest due first, strictly after the
    (due_at, id) `after` and with an id of at most `max_id` (keyset paging: an item that failed and stays
    planned is not taken again in the same run, and none planned since the count is taken)."""
    if max_id is None:
        return []
    query = select(DeletionItem.id, DeletionItem.due_at).where(
        DeletionItem.status == "planned", DeletionItem.due_at <= now, DeletionItem.id <= max_id
    )
    if after is not None:
        due_at, item_id = after
        query = query.where(
            or_(DeletionItem.due_at > due_at, and_(DeletionItem.due_at == due_at, DeletionItem.id > item_id))
        )
    if company_ids is not None:
        query = query.where(DeletionItem.company_id.in_(list(company_ids)))
    query = query.order_by(DeletionItem.due_at, DeletionItem.id).limit(limit)
    with engine.connect() as db:
        return [(item_id, due_at) for item_id, due_at in db.execute(query).all()]


def receipts(
    engine: Engine, company_id: str | None = None, receipt_id: int | None = None
) -> list[dict[str, Any]]:
    """Receipts in id order: all, a company's, or the one with `receipt_id` (none if there is no such)."""
    query = select(DeletionReceipt.__table__).order_by(DeletionReceipt.id)
    if company_id is not None:
        query = query.where(DeletionReceipt.company_id == company_id)
    if receipt_id is not None:
        query = query.where(DeletionReceipt.id == receipt_id)
    with engine.connect() as db:
        return [dict(r) for r in db.execute(query).mappings()]


def items(engine: Engine, company_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    with engine.connect() as db:
        frame = _items(db, None if company_id is None else [company_id], (status,) if status else None)
    return plain_rows(frame)


def _items(
    db: Db,
    company_ids: Sequence[str] | None,
    statuses: Sequence[str] | None,
    *,
    order: tuple[Any, ...] = (DeletionItem.id,),
    limit: int | None = None,
) -> pd.DataFrame:
    query = select(*[DeletionItem.__table__.c[c] for c in ITEM_COLUMNS]).order_by(*order).limit(limit)
    if statuses is not None:
        query = query.where(DeletionItem.status.in_(list(statuses)))
    return select_frame(db, query, DeletionItem.company_id, company_ids)


def _count(db: Db, company_ids: Sequence[str] | None, status: str) -> int:
    query = select(func.count()).where(DeletionItem.status == status)
    if company_ids is None:
        return int(db.execute(query).scalar_one())
    return sum(int(n) for (n,) in select_rows(db, query, DeletionItem.company_id, company_ids))


def _planner_items(db: Db, company_ids: Sequence[str] | None) -> pd.DataFrame:
    """Open items the planner wrote (its reason prefix; exact, case-sensitive, on both dialects)."""
    prefix = PLANNER_REASON_PREFIX
    query = (
        select(*[DeletionItem.__table__.c[c] for c in ITEM_COLUMNS])
        .where(DeletionItem.status.in_(OPEN), func.substr(DeletionItem.reason, 1, len(prefix)) == prefix)
        .order_by(DeletionItem.id)
    )
    return select_frame(db, query, DeletionItem.company_id, company_ids)


def _hold_candidates(db: Db, company_ids: Sequence[str] | None) -> pd.DataFrame:
    """Open items a legal hold may concern: those of a company with an unreleased hold, and those held."""
    under_hold = select(LegalHold.company_id).where(LegalHold.released_at.is_(None))
    query = (
        select(*[DeletionItem.__table__.c[c] for c in ITEM_COLUMNS])
        .where(
            DeletionItem.status.in_(OPEN),
            or_(DeletionItem.status == "held", DeletionItem.company_id.in_(under_hold)),
        )
        .order_by(DeletionItem.id)
    )
    return select_frame(db, query, DeletionItem.company_id, company_ids)


def holds_frame(db: Db, company_ids: Sequence[str] | None) -> pd.DataFrame:
    query = select(LegalHold.company_id, LegalHold.data_type).where(LegalHold.released_at.is_(None))
    return select_frame(db, query, LegalHold.company_id, company_ids)


def connections_frame(db: Db, company_ids: Sequence[str] | None) -> pd.DataFrame:
    query = select(Connection.id, Connection.company_id, Connection.source_type)
    return select_frame(db, query, Connection.company_id, company_ids)


def set_status(db: Db, ids: list[int], status: str, now: datetime, **values: Any) -> None:
    for chunk in batched(ids, 500):
        db.execute(
            update(DeletionItem)
            .where(DeletionItem.id.in_(list(chunk)))
            .values(status=status, updated_at=now, **values)
        )
