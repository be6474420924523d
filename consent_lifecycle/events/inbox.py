"""The inbox's life cycle: claim pending events with a lease, mark them done, or count a failed attempt.

A claim is a lease (`claimed_by`, `claimed_until`): a processor that dies mid-batch leaves its events
pending, and once the lease has run out any processor takes them again. Events are claimed oldest
`generated_at` first, so connection events of a batch are applied in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import Engine, and_, or_, select, update

from consent_lifecycle.batching import batched
from consent_lifecycle.db.bulk import CHUNK, select_frame
from consent_lifecycle.db.models import CodatEvent
from consent_lifecycle.events.parse import INBOX_COLUMNS

LEASE = timedelta(minutes=5)
#: a batch that failed is not claimed again before this (not by the same run: its `now` does not move)
RETRY_AFTER = timedelta(minutes=1)
#: attempts after which an event is failed (and its company marked `processing_failed`)
MAX_ATTEMPTS = 8
_COLUMNS = [CodatEvent.__table__.c[name] for name in INBOX_COLUMNS]


def claim(engine: Engine, now: datetime, *, worker: str, limit: int, lease: timedelta = LEASE) -> list[str]:
    """Lease up to `limit` pending events (unclaimed, or whose lease ran out) to `worker` in one short
    transaction; returns their ids, oldest `generated_at` first."""
    free = and_(
        CodatEvent.status == "pending",
        or_(CodatEvent.claimed_until.is_(None), CodatEvent.claimed_until <= now),
    )
    with engine.begin() as db:
        candidates = (
            select(CodatEvent.id).where(free).order_by(CodatEvent.generated_at, CodatEvent.id).limit(limit)
        )
        if db.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        ids = list(db.scalars(candidates))
        for chunk in batched(ids, CHUNK):
            db.execute(
                update(CodatEvent).where(CodatEvent.id.in_(chunk), free)
                .values(claimed_by=worker, claimed_until=now + lease)
            )
    return ids


def mark_done(db: Db, ids: Sequence[str], worker: str, now: datetime) -> int:
    """In the batch's transaction: its events done (only those still leased to `worker`)."""
    done = 0
    for chunk in batched(list(ids), CHUNK):
        done += db.execute(
            update(CodatEvent)
            .where(CodatEvent.id.in_(chunk), CodatEvent.claimed_by == worker, CodatEvent.status == "pending")
            .values(status="done", processed_at=now, claimed_until=None, last_error=None)
        ).rowcount
    return done


def mark_attempt_failed(
    engine: Engine, ids: Sequence[str], worker: str, error: str, now: datetime, max_attempts: int = MAX_ATTEMPTS
) -> tuple[int, list[str]]:
    """A batch that failed: attempts + 1, `last_error`, back to pending (claimable RETRY_AFTER later), or failed
    after `max_attempts`; returns (events retried, company ids of events that failed for good)."""
    mine = and_(CodatEvent.claimed_by == worker, CodatEvent.status == "pending")
    retried, failed = 0, []
    with engine.begin() as db:
        for chunk in batched(list(ids), CHUNK):
            where = and_(CodatEvent.id.in_(chunk), mine)
            last = and_(where, CodatEvent.attempts + 1 >= max_attempts)
            failed += [c for c in db.scalars(select(CodatEvent.company_id).where(last)) if c]
            db.execute(update(CodatEvent).where(last).values(
                status="failed", attempts=CodatEvent.attempts + 1, last_error=error[:2000], claimed_until=None,
                processed_at=now,
            ))
            retried += db.execute(update(CodatEvent).where(where).values(
                attempts=CodatEvent.attempts + 1, last_error=error[:2000], claimed_until=now + RETRY_AFTER,
            )).rowcount
    return retried, sorted(set(failed))


def counts(engine: Engine) -> dict[str, int]:
    """Events in the inbox by status."""
    from sqlalchemy import func

    with engine.connect() as db:
        rows = db.execute(select(CodatEvent.status, func.count()).group_by(CodatEvent.status)).all()
    return {status: int(n) for status, n in rows}


def leased(db: Db, ids: Sequence[str], worker: str) -> pd.DataFrame:
    """The events of `ids` still pending and leased to `worker` (INBOX_COLUMNS, oldest first), read in the
    batch's transaction."""
    query = select(*_COLUMNS).where(CodatEvent.claimed_by == worker, CodatEvent.status == "pending")
    frame = select_frame(db, query, CodatEvent.id, ids)
    frame["generated_at"] = pd.to_datetime(frame["generated_at"], utc=True)
    return frame.sort_values(["generated_at", "id"], kind="stable").reset_index(drop=True)
