"""The notification outbox: queue once per key, deliver at most once per key, survive crashes.

Rows move `pending` -> `sending` -> `sent`; a failed send goes back to `pending` (due again after a
backoff) or, after `max_attempts`, to `failed`. Delivery is claim, send, mark:

1. claim, in a short transaction: due rows (`pending` and due, or `sending` whose claim is older than the
   lease: the worker crashed between send and mark) become `sending` with `claimed_at`/`claimed_by`, and
   the attempt is counted. PostgreSQL skips rows another worker holds (`FOR UPDATE SKIP LOCKED`); SQLite
   serialises writers, and the UPDATE re-checks that each row is still due.
2. send, outside any transaction, with the row's key as the `Idempotency-Key`.
3. mark `sent` (or retry/failed), only if the claim is still ours. Outcomes are marked in bulk: one
   UPDATE per (claim, outcome) after every `MARK_EVERY` sends or `MARK_INTERVAL` seconds, at the end of
   the batch, and before an unexpected error propagates. A row is marked `sent` only after its send
   returned; a crash before its mark leaves it `sending`, and it is sent again (same key) after the lease.

A send whose outcome is unknown (crash, lost lease) is sent again with the same key, so the receiver can
drop the duplicate: at most once per key from the receiver's point of view.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection as Db
from sqlalchemy import Engine, and_, or_, select, update

from consent_lifecycle.batching import batched
from consent_lifecycle.clock import as_utc, iso
from consent_lifecycle.db.bulk import CHUNK, insert_new
from consent_lifecycle.db.models import NOTIFICATION_STATUSES, Notification
from consent_lifecycle.notify.channels import Channel, DeliveryError

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5
#: first wait before a failed row is due again; doubled after each further attempt
RETRY_AFTER = timedelta(minutes=1)
#: outcomes are marked after at most this many sends, or this many seconds of sending, whichever first
MARK_EVERY = 200
MARK_INTERVAL = 1.0
#: payload fields `list_notifications` lifts to the top level
LIFTED = ("threshold_days", "expires_at", "link")
STATUSES = NOTIFICATION_STATUSES
_table = Notification.__table__


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def queue(db: Db, rows: list[dict[str, Any]], now: datetime) -> int:
    """Insert notifications whose key is new (ON CONFLICT (key) DO NOTHING); returns how many were new.

    Each row needs `key`, `company_id`, `kind`, `channel`; optional `connection_id`, `payload` ({}),
    `due_at` (`now`), `created_at` (`now`). Runs in the caller's transaction.
    """
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        unique.setdefault(row["key"], row)
    known = {
        key for keys in batched(list(unique), CHUNK) for key in db.execute(select(Notification.key).where(Notification.key.in_(keys))).scalars()
    }
    fresh = [_row(row, now) for key, row in unique.items() if key not in known]  # a rerun queues none
    if not fresh:
        return 0
    return insert_new(db, _table, fresh, key="key")  # ON CONFLICT DO NOTHING: a concurrent queue of a key


def _row(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "key": row["key"], "company_id": row["company_id"], "connection_id": row.get("connection_id"),
        "kind": row["kind"], "channel": row["channel"], "payload": row.get("payload") or {},
        "created_at": row.get("created_at") or now, "due_at": row.get("due_at") or now,
        "status": "pending", "attempts": 0,
    }


def claim(
    engine: Engine, now: datetime, *, worker: str, limit: int = 500, lease: timedelta = LEASE,
    max_attempts: int = MAX_ATTEMPTS,
) -> list[dict[str, Any]]:
    """Claim up to `limit` due rows for `worker` (one short transaction); returns them, oldest due first.

    A `sending` row whose lease ran out after its last allowed attempt is not sent again: it becomes
    `failed` (its outcome is unknown).
    """
    expired = and_(Notification.status == "sending", Notification.claimed_at <= now - lease)
    due = or_(and_(Notification.status == "pending", Notification.due_at <= now), expired)
    with engine.begin() as db:
        db.execute(
            update(Notification)
            .where(expired, Notification.attempts >= max_attempts)
            .values(status="failed", last_error="outcome unknown: not marked within the lease")
        )
        candidates = select(Notification.id).where(due).order_by(Notification.due_at, Notification.id).limit(limit)
        if db.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        claimed = db.execute(
            update(Notification)
            .where(Notification.id.in_(candidates.scalar_subquery()), due)
            .values(status="sending", claimed_at=now, claimed_by=worker, attempts=Notification.attempts + 1)
            .returning(*_table.c)
        ).mappings()
        rows = [dict(row) for row in claimed]
    return sorted(rows, key=lambda r: (as_utc(r["due_at"]), r["id"]))


def message(row: dict[str, Any]) -> dict[str, Any]:
    """What a channel sends for a claimed row: its payload plus key, kind, company and connection."""
    return {
        **(row["payload"] or {}),
        "key": row["key"], "kind": row["kind"], "company_id": row["company_id"],
        "connection_id": row["connection_id"],
    }


def deliver(
    engine: Engine, channel: Channel, now: datetime, *, worker: str | None = None, limit: int = 500,
    max_attempts: int = MAX_ATTEMPTS, lease: timedelta = LEASE, retry_after: timedelta = RETRY_AFTER,
) -> dict[str, int]:
    """Send what is due at `now`: claim, send each outside the transaction, mark.

    Returns counts: `claimed`, `sent`, `retrying` (back to pending, due after a backoff), `failed`
    (after `max_attempts`, including rows whose last attempt's outcome stayed unknown past the lease).
    """
    worker = worker or default_worker()
    with engine.connect() as db:
        unknown_before = _count_unknown(db, now, lease, max_attempts)
    rows = claim(engine, now, worker=worker, limit=limit, lease=lease, max_attempts=max_attempts)
    counts = {"claimed": len(rows), "sent": 0, "retrying": 0, "failed": unknown_before}
    outcomes: list[tuple[dict[str, Any], dict[str, Any]]] = []
    flushed = time.monotonic()
    try:
        for row in rows:
            try:
                channel.send(message(row))
            except DeliveryError as exc:
                error = str(exc)[:1000]
                if row["attempts"] >= max_attempts:
                    outcomes.append((row, {"status": "failed", "last_error": error}))
                    counts["failed"] += 1
                else:
                    retry_at = now + retry_after * 2 ** (row["attempts"] - 1)
                    outcomes.append((row, {"status": "pending", "last_error": error, "due_at": retry_at}))
                    counts["retrying"] += 1
            else:
                outcomes.append((row, {"status": "sent", "sent_at": now, "last_error": None}))
                counts["sent"] += 1
            if len(outcomes) >= MARK_EVERY or time.monotonic() - flushed >= MARK_INTERVAL:
                _mark_many(engine, outcomes)
                outcomes, flushed = [], time.monotonic()
    finally:  # also when a send raised something unexpected: what was sent is marked, the rest stays claimed
        _mark_many(engine, outcomes)
    if rows:
        log.info("outbox via %s (%s): %s", getattr(channel, "name", "?"), worker, counts)
    return counts


def _count_unknown(db: Db, now: datetime, lease: timedelta, max_attempts: int) -> int:
    query = select(Notification.id).where(
        Notification.status == "sending", Notification.claimed_at <= now - lease,
        Notification.attempts >= max_attempts,
    )
    return len(db.execute(query).all())


def _mark(engine: Engine, row: dict[str, Any], now: datetime, **values: Any) -> None:
    """Record the outcome of one row, only while the claim is still ours (not re-claimed after a lost lease)."""
    _mark_many(engine, [(row, values)])


def _mark_many(engine: Engine, outcomes: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Record outcomes (claimed row, column values) in one transaction: one UPDATE ... WHERE id IN (...)
    per claim and distinct values, each only on rows still claimed by that claim (`sending`, same
    `claimed_by` and `claimed_at`). A row whose claim was lost is left alone and logged."""
    if not outcomes:
        return
    groups: dict[tuple[Any, ...], tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for row, values in outcomes:
        group = (row["claimed_by"], row["claimed_at"], tuple(sorted(values.items())))
        groups.setdefault(group, (values, []))[1].append(row)
    lost: list[tuple[dict[str, Any], str]] = []
    with engine.begin() as db:
        for (claimed_by, claimed_at, _), (values, rows) in groups.items():
            ids = [row["id"] for row in rows]
            done: set[int] = set()
            for chunk in batched(ids, CHUNK):
                done.update(
                    db.execute(
                        update(Notification)
                        .where(
                            Notification.id.in_(chunk), Notification.status == "sending",
                            Notification.claimed_by == claimed_by, Notification.claimed_at == claimed_at,
                        )
                        .values(**values)
                        .returning(Notification.id)
                    ).scalars()
                )
            lost += [(row, values["status"]) for row in rows if row["id"] not in done]
    for row, status in lost:
        log.warning("notification %s: claim lost before marking %s", row["key"], status)


def list_notifications(
    engine: Engine, status: str | None = None, company_id: str | None = None
) -> list[dict[str, Any]]:
    """Notifications, oldest first, as plain rows (snake_case keys, ISO UTC times, payload fields lifted)."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown notification status {status!r}: expected one of {', '.join(STATUSES)}")
    query = select(_table).order_by(Notification.id)
    if status is not None:
        query = query.where(Notification.status == status)
    if company_id is not None:
        query = query.where(Notification.company_id == company_id)
    with engine.connect() as db:
        rows = [dict(row) for row in db.execute(query).mappings()]
    return [_listed(row) for row in rows]


def _listed(r: dict[str, Any]) -> dict[str, Any]:
    payload = r["payload"] or {}
    listed = {
        "id": r["id"], "key": r["key"], "company_id": r["company_id"], "connection_id": r["connection_id"],
        "kind": r["kind"], "channel": r["channel"], "status": r["status"], "attempts": r["attempts"],
        "last_error": r["last_error"], "created_at": iso(r["created_at"]), "due_at": iso(r["due_at"]),
        "sent_at": iso(r["sent_at"]),
    }
    listed.update({field: payload[field] for field in LIFTED if field in payload})
    return listed
