"""Executing one due deletion item exactly once, with a receipt.

Execution is one transaction per item that holds the company's lock (`lock_company`) from the coverage
check through the deletes to the receipt, so a grant that commits first wins (the item is cancelled) and
one that comes later waits for the deletion. On PostgreSQL the item's row is claimed first with
`FOR UPDATE SKIP LOCKED`, so concurrent workers take different items. A crash anywhere inside rolls the
whole transaction back: the item is still planned and the next run does it again; a Codat DELETE that
had gone through answers 404 the second time, which counts as done, and the receipt is written then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import Engine, insert, select, update

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.db.engine import lock_company
from consent_lifecycle.db.models import Connection, DeletionItem, DeletionReceipt
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.retention.plan import held
from consent_lifecycle.retention.purge import Purger
from consent_lifecycle.retention.store import connections_frame, holds_frame, set_status

#: attempts after which a failing item is failed for good
MAX_ATTEMPTS = 5
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
        set_status(db, [item_id], "held", now)
        return Outcome(item_id, "held")
    pairs, consent_ids = Ledger(db.engine, catalog).coverage(db, company)
    if _covered(item, pairs):
        set_status(db, [item_id], "cancelled", now, last_error="covered by an active consent at execution")
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
    return bool(held(items, holds_frame(db, [item["company_id"]]), connections_frame(db, [item["company_id"]])).iloc[0])


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
