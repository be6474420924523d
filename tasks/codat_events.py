"""codat-events' I/O steps: claim a batch of the inbox, apply it in one transaction, or count its failure."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.events import inbox
from consent_lifecycle.events.parse import parse
from consent_lifecycle.events.store import apply
from consent_lifecycle.reconcile.marks import mark
from tasks.resources import engine, settings


def _keeps_fresh() -> timedelta:
    """How long a success stays fresh after the next scheduled sync would have replaced it."""
    catalog = load_catalog(settings().catalog)
    return timedelta(hours=catalog.freshness_hours - catalog.sync_schedule_hours)


@task(cache_policy=NO_CACHE)
def claim_events(now: datetime, worker: str, limit: int) -> list[str]:
    """Lease up to `limit` pending events to `worker`; their ids, oldest first."""
    return inbox.claim(engine(), now, worker=worker, limit=limit)


@task(cache_policy=NO_CACHE, task_run_name="process-{worker}-{now:%H%M%S}")
def process_events(ids: list[str], now: datetime, worker: str) -> dict[str, Any]:
    """Parse and apply the leased events `ids` and mark them done, all in one transaction: a crash leaves
    them pending (the lease lets the next run take them), a failure is counted on them (attempts, last
    error; failed after the last attempt, its companies marked `processing_failed`)."""
    try:
        with engine().begin() as db:
            claimed = inbox.leased(db, ids, worker)
            parsed = parse(claimed)
            effects = apply(db, parsed, now, keeps_fresh=_keeps_fresh())
            done = inbox.mark_done(db, claimed["id"].tolist(), worker, now)
    except Exception as exc:  # noqa: BLE001 - the batch is retried; the flow reports the error
        error = f"{type(exc).__name__}: {exc}"
        retried, failed = inbox.mark_attempt_failed(engine(), ids, worker, error, now)
        if failed:
            with engine().begin() as db:
                mark(db, [(c, "processing_failed") for c in failed], now)
        return {"retried": retried, "failed": len(failed), "error": error[:500],
                "marked": {"processing_failed": failed} if failed else {}}
    return {
        "processed": parsed.counts if done == len(claimed) else {}, "done": done,
        "read_observations": effects.observations, "violations": effects.violations,
        "violating_companies": effects.violating_companies, "marked": effects.marked,
        "connections_updated": effects.connections_updated, "connections_inserted": effects.connections_inserted,
        "stale_connection_events": effects.stale_connection_events, "companies_deleted": effects.companies_deleted,
    }
