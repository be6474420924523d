"""codat-events: drain the inbox of Codat webhook events, and reconcile at once any company a read betrayed.

Batches of `batch_size` events, oldest first: one task leases a batch, one applies it and marks it done in
one transaction (read observations, last reads, connection state, marks). Companies with a violation (a
Complete read of a data type no consent covered at that moment) are then reconciled in this run through
consent-reconciliation's own tasks: their pulls and sync settings read from Codat, the findings and the
deletion items stored, their sync settings set to exactly their entitled types. Reads that only confirm
consented pulls cost no Codat request. Triggered by `consent.codat.events-received`, and on a schedule.
"""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from consent_lifecycle.batching import batched
from consent_lifecycle.clock import iso, utcnow
from consent_lifecycle.events.summary import EventsSummary
from flows.run_info import run_name, run_tags, started_by, tag_run
from flows.task_runner import task_runner
from tasks.codat_events import claim_events, process_events
from tasks.reconciliation import fetch_codat_state, reconcile_batch, remediate

#: a run stops after this many batches (the next run, or the schedule, takes the rest)
MAX_BATCHES = 100
RECONCILE_BATCH = 2000


def _run_name() -> str:
    """`codat-events-<time>-<what started it>`: webhook (the receiver's nudge), scheduled (the safety net)..."""
    now = flow_run.parameters.get("now") or flow_run.scheduled_start_time
    return run_name("codat-events", f"{now:%Y-%m-%dT%H%M%S}" if now else None, started_by())


@flow(name="codat-events", flow_run_name=_run_name, task_runner=task_runner())
async def codat_events(now: datetime | None = None, batch_size: int = 2000, trigger: str | None = None) -> EventsSummary:
    """Drain the inbox of Codat webhook events, reconciling at once companies whose reads broke consent;
    `trigger` is what started the run when an automation did ("webhook": the receiver stored events)."""
    logger = get_run_logger()
    await tag_run(run_tags(dry_run=False))
    now = now or utcnow()
    worker = f"codat-events-{flow_run.id or uuid4()}"
    batches = []
    for _ in range(MAX_BATCHES):
        ids = claim_events(now, worker, batch_size)
        if not ids:
            break
        batches.append(process_events(ids, now, worker))
    violators = sorted({c for b in batches for c in b.get("violating_companies", ())})
    requests = 0
    for companies in batched(violators, RECONCILE_BATCH):
        state = fetch_codat_state.submit(companies, None, None).result()
        result = reconcile_batch(companies, state, now, None, None, False)
        requests += state.requests_sent  # counted by the client: every page and retry
        if result.needs_remediation:
            remediation = remediate.submit(
                companies, result.reconciliation.sync_settings, result.reconciliation.queue, now
            ).result()
            requests += remediation.codat_requests
    summary = EventsSummary.of(iso(now), batches, reconciled_at_once=violators, codat_requests=requests)
    logger.info("Processed %d events in %d batches (%s); %d retried, %d failed",
                summary.events, summary.batches, ", ".join(f"{k} {v}" for k, v in summary.processed.items()) or
                "none", summary.retried, summary.failed)
    logger.info("%d companies read data no consent covered: reconciled at once (%d Codat requests)",
                len(violators), requests)
    await create_markdown_artifact(key="codat-events-summary", markdown=summary.markdown())
    return summary
