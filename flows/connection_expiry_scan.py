"""connection-expiry-scan: read connections from Codat, track when each consent expires, warn ahead.

Pages of companies (with their connections) are fetched in batches, one task per batch of pages; a task
writes each page to the snapshot (one transaction) and classifies it as it arrives, while the next pages
download, and keeps only counts, planned notices and the head of the operator's table; batches run side
by side on the configured task runner (threads, or a Dask cluster: flows/task_runner.py). Expiring and expired
connections get one notification per (connection, threshold, expiry) with a re-consent link, through the
outbox; expired connections drop out of the ledger's entitlements (it classifies at the moment asked),
so nothing is pulled for them. `dry_run` reads Codat and reports, and writes and sends nothing.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from consent_lifecycle.batching import batched
from consent_lifecycle.clock import iso, utcnow
from consent_lifecycle.expiry import ATTENTION_CLASSES
from consent_lifecycle.expiry.scan import BatchScan, ScanSummary
from consent_lifecycle.operator_view import markdown_table
from flows.run_info import completed, run_name, run_tags, started_by, tag_run
from flows.task_runner import task_runner
from tasks.artifacts import publish_table
from tasks.codat import count_company_pages, fetch_companies
from tasks.expiry import deliver_notifications, queue_notifications, scan_batch, scan_pages
from tasks.snapshot import retire_unseen_companies


def _run_name() -> str:
    """`expiry-scan-<day>-<what started it>[-dry-run]`, e.g. expiry-scan-2026-11-01-scheduled."""
    now = flow_run.parameters.get("now") or flow_run.scheduled_start_time
    return run_name("expiry-scan", f"{now:%Y-%m-%d}" if now else None, started_by())


@flow(name="connection-expiry-scan", flow_run_name=_run_name, task_runner=task_runner())
async def connection_expiry_scan(
    company_ids: list[str] | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    page_size: int = 5000,
    pages_per_task: int = 4,
) -> ScanSummary:
    logger = get_run_logger()
    await tag_run(run_tags(dry_run))
    now = now or utcnow()
    if company_ids:
        fetched = [fetch_companies.submit(batch) for batch in batched(company_ids, 500)]
        batches = [scan_batch.submit(f.result(), now, dry_run) for f in fetched]
    else:
        pages = list(range(1, await count_company_pages(page_size) + 1))
        batches = [scan_pages.submit(b, page_size, now, dry_run) for b in batched(pages, pages_per_task)]
    # batches fetch and write side by side on the task runner (threads, or Dask: flows/task_runner.py); a
    # task scans each page as it arrives while the next downloads (a failed fetch fails the run with
    # Codat's error, here)
    scanned = BatchScan.combine([batch.result() for batch in batches])
    summary = ScanSummary.of(scanned, as_of=iso(now), dry_run=dry_run)
    if not company_ids:  # and the one request (a one-company page) that counted the pages
        summary = summary.with_(codat_requests=summary.codat_requests + 1)
    delivery = None
    if not dry_run:
        summary = summary.with_(notifications_queued=queue_notifications(scanned.planned, now))
        delivery = deliver_notifications.submit(now)  # sent while the rest is recorded
        if not company_ids:
            summary = summary.with_(retired_companies=retire_unseen_companies(now))
    logger.info("Scanned %d companies, %d connections: %s", summary.companies, sum(summary.classes.values()),
                ", ".join(f"{k} {v}" for k, v in summary.classes.items()))
    await _attention_artifact(scanned.attention, summary)
    if delivery is not None:
        summary = summary.with_(delivery=delivery.result())
    logger.info("Notices: %d due, %s queued; delivery: %s", summary.notifications_planned,
                "none (dry run)" if dry_run else summary.notifications_queued,
                ", ".join(f"{k} {v}" for k, v in (summary.delivery or {}).items()) or "none")
    await _summary_artifact(summary)
    return completed(summary)


async def _attention_artifact(table: pd.DataFrame, summary: ScanSummary) -> None:
    """What the operator sees in the Prefect UI: what is expired, expiring or stale, most urgent first."""
    rows = [
        {
            key: (iso(value) if isinstance(value, pd.Timestamp) else None if pd.isna(value) else value)
            for key, value in row.items()
        }
        for row in table.to_dict("records")
    ]
    await publish_table(
        "expiry-attention", rows, total=sum(summary.classes[c] for c in ATTENTION_CLASSES),
        full_list=f"consent connections attention --now {summary.as_of}",
        description=f"Expired, expiring and stale connections at {summary.as_of}, most urgent first",
        nothing=f"Nothing expired, expiring or stale at {summary.as_of}.",
    )


async def _summary_artifact(summary: ScanSummary) -> None:
    """The counts of the scan, its notices and their delivery, for the operator."""
    lines = [
        f"# Connection expiry scan, {summary.as_of}" + (" (dry run)" if summary.dry_run else ""),
        "",
    ]
    lines += markdown_table(("class", "connections"), summary.classes)
    notices = {"notifications planned": summary.notifications_planned, "Codat requests": summary.codat_requests}
    if summary.notifications_queued is not None:
        notices["notifications queued"] = summary.notifications_queued
    notices |= {f"delivery: {k}": v for k, v in (summary.delivery or {}).items()}
    lines += ["", *markdown_table(("notices", "count"), notices)]
    await create_markdown_artifact(key="expiry-summary", markdown="\n".join(lines))

