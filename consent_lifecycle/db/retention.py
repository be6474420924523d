"""Retention's reads and writes: plan deletion items, then execute each exactly once with a receipt.

Execution is one transaction per item that holds the company's lock (`lock_company`) from the coverage
check through the deletes to the receipt, so a grant that commits first wins (the item is cancelled) and
one that comes later waits for the deletion. On PostgreSQL the item's row is claimed first with
`FOR UPDATE SKIP LOCKED`, so concurrent workers take different items. A crash anywhere inside rolls the
whole transaction back: the item is still planned and the next run does it again; a Codat DELETE that
had gone through answers 404 the second time, which counts as done, and the receipt is written then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import Engine, and_, func, insert, or_, select, update

from consent_lifecycle.batching import batched
from consent_lifecycle.catalog import Catalog
from consent_lifecycle.db.bulk import insert_new, plain_rows, select_frame
from consent_lifecycle.db.engine import lock_company
from consent_lifecycle.db.models import Connection, DeletionItem, DeletionReceipt, LegalHold
from consent_lifecycle.ledger import Ledger, load_events
from consent_lifecycle.reconcile.intervals import entitlement_intervals
from consent_lifecycle.retention.plan import PLANNER_REASON_PREFIX, cancelled, held, plan_deletions
from consent_lifecycle.retention.purge import Purger

MAX_ATTEMPTS = 5
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
#: deletes a connection at Codat and returns the HTTP status (404 = already gone)
DeleteConnection = Callable[[str, str], Awaitable[int]]


@dataclass(frozen=True)
class Outcome:
    item_id: int
    status: str  # done, cancelled, held, failed, retrying or skipped (another worker had it)
    receipt_id: int | None = None
    codat_status: int | None = None
    rows_purged: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(
    engine: Engine, catalog: Catalog, now: datetime, company_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """Open new items, cancel those covered again, hold or release by legal holds: idempotent.

    Set-based and bounded: of the open items only those a decision is about are read (the planner's own, to
    cancel; those of companies under a hold, or held now, to hold or release), never every open item (the
    reconciliation's `unconsented_pull` items can be hundreds of thousands). The lists returned are at most
    `ARTIFACT_ROWS` long each; the counts are whole.
    """
    with engine.begin() as db:
        events = load_events(db, company_ids)
        events = events[events["at"] <= pd.Timestamp(now)]
        connections = _connections(db, company_ids)
        planned = plan_deletions(entitlement_intervals(events, connections), catalog, now)
        rows = [
            {**r, "status": "planned", "plan_version": catalog.version, "created_at": now, "updated_at": now}
            for r in plain_rows(planned.drop(columns="ended_at"))
        ]
        new = insert_new(db, DeletionItem.__table__, rows, key="key")
        gone = cancelled(_planner_items(db, company_ids), planned)
        _set_status(db, list(gone["id"]), "cancelled", now)
        # only an item of a company under an unreleased hold can be held; one held now may be released
        items = _hold_candidates(db, company_ids)
        on_hold = held(items, _holds(db, company_ids), connections)
        _set_status(db, list(items.loc[on_hold & (items["status"] == "planned"), "id"]), "held", now)
        _set_status(db, list(items.loc[~on_hold & (items["status"] == "held"), "id"]), "planned", now)
        soonest = _items(
            db, company_ids, ("planned",), order=(DeletionItem.due_at, DeletionItem.id), limit=ARTIFACT_ROWS
        )  # per chunk of company_ids: merged below
        soonest = soonest.sort_values(["due_at", "id"], kind="stable").head(ARTIFACT_ROWS)
    return {
        "planned_new": new,
        "cancelled": len(gone),
        "held": int(on_hold.sum()),
        "cancelled_items": plain_rows(gone[ITEM_COLUMNS].head(ARTIFACT_ROWS)),
        "held_items": plain_rows(items.loc[on_hold, ITEM_COLUMNS].head(ARTIFACT_ROWS)),
        "planned_items": plain_rows(soonest),
    }


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


async def execute(
    engine: Engine,
    catalog: Catalog,
    item_id: int,
    now: datetime,
    *,
    delete_connection: DeleteConnection,
    purger: Purger,
    worker: str,
) -> Outcome:
    """Execute one due item exactly once (see the module docstring); any failure leaves it planned."""
    try:
        with engine.begin() as db:
            return await _execute(db, catalog, item_id, now, delete_connection, purger, worker)
    except Exception as exc:  # noqa: BLE001 - whatever failed, the transaction rolled back: count the attempt
        return _failed(engine, item_id, now, f"{type(exc).__name__}: {exc}")


async def _execute(
    db: Db,
    catalog: Catalog,
    item_id: int,
    now: datetime,
    delete_connection: DeleteConnection,
    purger: Purger,
    worker: str,
) -> Outcome:
    item = _claim(db, item_id)
    if item is None or item["status"] != "planned" or item["due_at"] > now:
        return Outcome(item_id, "skipped")
    company = item["company_id"]
    if db.dialect.name == "postgresql":  # SQLite took the database's write lock in _claim
        lock_company(db, company)
    item = _claim(db, item_id)  # read again under the company's lock: a racing worker may have finished it
    if item is None or item["status"] != "planned":
        return Outcome(item_id, "skipped")
    if _held(db, item):
        _set_status(db, [item_id], "held", now)
        return Outcome(item_id, "held")
    pairs, consent_ids = Ledger(db.engine, catalog).coverage(db, company)
    if _covered(item, pairs):
        _set_status(db, [item_id], "cancelled", now, last_error="covered by an active consent at execution")
        return Outcome(item_id, "cancelled")
    codat_status = rows = None
    if item["scope"] == "codat_connection":
        codat_status = await delete_connection(company, item["connection_id"])
        db.execute(update(Connection).where(Connection.id == item["connection_id"]).values(deleted_at=now))
    else:
        rows = purger.purge(db, company, item["data_type"])
    receipt = db.execute(
        insert(DeletionReceipt)
        .values(
            item_id=item_id,
            company_id=company,
            executed_at=now,
            what={
                "scope": item["scope"],
                "connection_id": item["connection_id"],
                "data_type": item["data_type"],
            },
            why=item["reason"],
            consents_checked=consent_ids,
            codat_status=codat_status,
            rows_purged=rows,
        )
        .returning(DeletionReceipt.id)
    ).scalar_one()
    db.execute(
        update(DeletionItem)
        .where(DeletionItem.id == item_id)
        .values(
            status="done",
            updated_at=now,
            claimed_by=worker,
            claimed_at=now,
            attempts=DeletionItem.attempts + 1,
        )
    )
    return Outcome(item_id, "done", receipt, codat_status, rows)


def _claim(db: Db, item_id: int) -> dict[str, Any] | None:
    query = select(DeletionItem.__table__).where(DeletionItem.id == item_id)
    if db.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    else:  # SQLite: the write lock first (it serializes every writer), then the read
        db.execute(update(DeletionItem).where(DeletionItem.id == item_id).values(id=DeletionItem.id))
    row = db.execute(query).mappings().first()
    return dict(row) if row is not None else None


def _covered(item: dict[str, Any], pairs: pd.DataFrame) -> bool:
    if item["scope"] == "codat_connection":
        return bool((pairs["connection_id"] == item["connection_id"]).any())
    return bool((pairs["data_type"] == item["data_type"]).any())


def _held(db: Db, item: dict[str, Any]) -> bool:
    items = pd.DataFrame([item])
    return bool(held(items, _holds(db, [item["company_id"]]), _connections(db, [item["company_id"]])).iloc[0])


def _failed(engine: Engine, item_id: int, now: datetime, error: str) -> Outcome:
    with engine.begin() as db:
        attempts = db.scalar(select(DeletionItem.attempts).where(DeletionItem.id == item_id)) or 0
        status = "failed" if attempts + 1 >= MAX_ATTEMPTS else "planned"
        db.execute(
            update(DeletionItem)
            .where(DeletionItem.id == item_id, DeletionItem.status == "planned")
            .values(attempts=attempts + 1, last_error=error[:2000], status=status, updated_at=now)
        )
    return Outcome(item_id, "failed" if status == "failed" else "retrying", error=error)


def receipts(engine: Engine, company_id: str | None = None) -> list[dict[str, Any]]:
    query = select(DeletionReceipt.__table__).order_by(DeletionReceipt.id)
    if company_id is not None:
        query = query.where(DeletionReceipt.company_id == company_id)
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


def _holds(db: Db, company_ids: Sequence[str] | None) -> pd.DataFrame:
    query = select(LegalHold.company_id, LegalHold.data_type).where(LegalHold.released_at.is_(None))
    return select_frame(db, query, LegalHold.company_id, company_ids)


def _connections(db: Db, company_ids: Sequence[str] | None) -> pd.DataFrame:
    query = select(Connection.id, Connection.company_id, Connection.source_type)
    return select_frame(db, query, Connection.company_id, company_ids)


def _set_status(db: Db, ids: list[int], status: str, now: datetime, **values: Any) -> None:
    for chunk in batched(ids, 500):
        db.execute(
            update(DeletionItem)
            .where(DeletionItem.id.in_(list(chunk)))
            .values(status=status, updated_at=now, **values)
        )
