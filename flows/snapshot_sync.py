"""snapshot-sync: read every company and connection from Codat into the local snapshot.

Pages of companies carry their connections, so a full sync is `totalResults / pageSize` requests, fetched
in batches (one task per batch of pages, not per company) and written in one transaction per batch.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from consent_lifecycle.batching import batched
from consent_lifecycle.clock import iso, utcnow
from consent_lifecycle.snapshot.store import SyncSummary
from flows.run_info import run_name, started_by
from flows.task_runner import task_runner
from tasks.artifacts import publish_table
from tasks.codat import count_company_pages, fetch_companies, fetch_company_pages
from tasks.snapshot import retire_unseen_companies, snapshot_counts, write_snapshot


def _run_name() -> str:
    """`snapshot-sync-<time>-<what started it>`."""
    now = flow_run.parameters.get("now") or flow_run.scheduled_start_time
    return run_name("snapshot-sync", f"{now:%Y-%m-%dT%H%M%S}" if now else None, started_by())


@flow(name="snapshot-sync", flow_run_name=_run_name, task_runner=task_runner())
async def snapshot_sync(
    company_ids: list[str] | None = None,
    now: datetime | None = None,
    page_size: int = 5000,
    pages_per_task: int = 4,
) -> SyncSummary:
    """Sync all companies (or only `company_ids`) as of `now` (default: the current time)."""
    now = now or utcnow()
    if company_ids:
        batches = [fetch_companies.submit(batch) for batch in batched(company_ids, 500)]
    else:
        pages = list(range(1, await count_company_pages(page_size) + 1))
        batches = [fetch_company_pages.submit(batch, page_size) for batch in batched(pages, pages_per_task)]
    # each batch is written once its fetch is in (a failed fetch fails the run with Codat's error, here)
    changes = [written.result() for written in [write_snapshot.submit(o.result(), now) for o in batches]]
    retired = None if company_ids else retire_unseen_companies(now)
    counts = snapshot_counts()
    get_run_logger().info("Synced %d companies: %d new connections, %d changed status, %d vanished%s",
                          sum(c.companies for c in changes), sum(c.new for c in changes),
                          sum(c.changed for c in changes), sum(c.vanished for c in changes),
                          f"; {retired} companies gone from Codat retired" if retired else "")
    await publish_table(
        "snapshot-connections", counts, description=f"Connections by source type and status at {iso(now)}",
        nothing=f"No connections at Codat at {iso(now)}.",
    )
    return SyncSummary.of(changes, as_of=iso(now), connections=counts, retired_companies=retired)
