"""consent-reconciliation: what Codat is set to pull and did pull, and what products read, against consent.

Which companies: `company_ids` when named; every active company for a past window; otherwise tonight's
selection (consent_lifecycle.reconcile.select): companies marked by events, whose consent changed, whose
`lastSync` moved without its webhook, with pulls in flight, never or long ago reconciled, and a rotating
sweep slice so each is read at least every `sweep_days`; `full` reads every company. A selection the
request cap (CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE) cannot read within `budget_minutes` is cut, lowest
priorities deferred, and the summary says so. Companies go in batches: one task reads a
batch's sync settings and pull history from Codat, one diffs it against the ledger in one transaction
(consent as of each pull's and read's own time) and stores findings, one remediates at Codat: sync
settings cut or widened to exactly the entitled types, missing pulls queued. `window_start`/`window_end`
check a past window instead (a backfill slice); the present (sync settings, missing pulls) is checked only
when the window reaches `now`. `dry_run` reads and reports, and writes and changes nothing.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run

from consent_lifecycle.batching import batched
from consent_lifecycle.clock import iso, utcnow
from consent_lifecycle.operator_view import lead_with, markdown_table, with_company_names
from consent_lifecycle.reconcile.select import Selection
from consent_lifecycle.reconcile.summary import (
    BatchReport,
    ReconciliationSummary,
    Remediation,
    findings_table,
    requests_by_reason,
)
from flows.run_info import completed, run_name, run_tags, started_by, tag_run
from flows.task_runner import task_runner
from tasks.artifacts import publish_table
from tasks.reconciliation import (
    fetch_codat_state,
    list_companies,
    reconcile_batch,
    remediate,
    select_for_tonight,
)
from tasks.snapshot import company_names

#: rows in each table artifact
REPORT_ROWS = 1000
REMEDIATION_COLUMNS = ["action", "company", "company_id", "connection_id"]
#: batches whose Codat state is being read at once, ahead of the one being reconciled
FETCHES_AHEAD = 2


def _run_name() -> str:
    """`reconcile-<when>-<what started it>[-dry-run]`; a window (a backfill slice) is named by its bounds,
    e.g. reconcile-2026-10-01T0000-to-2026-10-02T0000-backfill."""
    parameters = flow_run.parameters
    start, end = parameters.get("window_start"), parameters.get("window_end")
    if start or end:
        when = f"{start:%Y-%m-%dT%H%M}" if start else None
        when = "-to-".join(filter(None, [when, f"{end:%Y-%m-%dT%H%M}" if end else None])) if end else when
    else:
        now = parameters.get("now") or flow_run.scheduled_start_time
        when = f"{now:%Y-%m-%dT%H%M}" if now else None
    return run_name("reconcile", when, started_by())


@flow(name="consent-reconciliation", flow_run_name=_run_name, task_runner=task_runner(processes=True))
async def consent_reconciliation(
    company_ids: list[str] | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = 2000,
    full: bool = False,
    sweep_days: int = 7,
    budget_minutes: float = 60.0,
) -> ReconciliationSummary:
    logger = get_run_logger()
    await tag_run(run_tags(dry_run))
    now = now or utcnow()
    if window_start and window_end and window_start >= window_end:
        raise ValueError(f"window_start {iso(window_start)} is not before window_end {iso(window_end)}")
    if sweep_days < 1:
        raise ValueError(f"sweep_days must be at least 1, got {sweep_days}")
    mode, selection = _select(company_ids, window_start or window_end, now, sweep_days, full, budget_minutes)
    batches = batched(selection.company_ids, batch_size)
    logger.info("Selection %s: %d companies (%s)%s", mode, len(selection.company_ids),
                ", ".join(f"{k} {v}" for k, v in selection.reasons.items()) or "none",
                f"; {selection.deferred} deferred by the request budget" if selection.deferred else "")
    progress = await create_progress_artifact(
        0.0, key="reconciliation-progress", description="Batches reconciled"
    )
    reports: list[BatchReport] = []
    remediations: list[Remediation] = []
    requests: list[dict[str, int]] = []  # Codat requests of each fetch, by company
    # a pipeline on the task runner: the next FETCHES_AHEAD batches' Codat state is read while this one is
    # reconciled, and a batch is remediated at Codat while the next are read and reconciled. The fetches
    # are the longest step (on a steady night nearly all of the run): two in flight keep both cores busy.
    # A batch's frames are dropped once reported: memory stays a few batches.
    fetching = deque(fetch_codat_state.submit(b, window_start, window_end) for b in batches[:FETCHES_AHEAD])
    remediating = None
    for done, batch in enumerate(batches, start=1):
        state = fetching.popleft().result()
        if (following := done - 1 + FETCHES_AHEAD) < len(batches):
            fetching.append(fetch_codat_state.submit(batches[following], window_start, window_end))
        result = reconcile_batch(batch, state, now, window_start, window_end, dry_run)
        requests.append(state.requests)
        del state
        if remediating is not None:
            remediations.append(remediating.result())
            remediating = None
        if not dry_run and result.needs_remediation:
            remediating = remediate.submit(batch, result.reconciliation.sync_settings, result.reconciliation.queue, now)
        reports.append(result.report(REPORT_ROWS))
        await update_progress_artifact(progress, 100.0 * done / len(batches))
    if remediating is not None:
        remediations.append(remediating.result())
    summary = ReconciliationSummary.combine(
        reports, remediations, now=now, window_start=window_start, window_end=window_end, dry_run=dry_run,
        selection=mode, reasons=selection.reasons, deferred=selection.deferred,
        estimated_minutes=selection.estimated_minutes,
        codat_requests=sum(sum(r.values()) for r in requests) + sum(r.codat_requests for r in remediations),
        codat_requests_by_reason=requests_by_reason(
            requests + [r.requests for r in remediations], selection.reason_of(), mode
        ),
    )
    logger.info("Findings: %s; %d new, %d resolved", ", ".join(f"{k} {v}" for k, v in summary.findings.items()),
                summary.new, summary.resolved)
    logger.info("Remediation%s: sync settings set %d of %d, pulls queued %d of %d, deletion items opened %d",
                " (dry run: none done)" if dry_run else "", summary.sync_settings_set, summary.sync_settings_to_set,
                summary.pulls_queued, summary.pulls_to_queue, summary.deletion_items_opened)
    await _report(reports, summary)
    return completed(summary)


def _select(
    company_ids: list[str] | None, window: datetime | None, now: datetime, sweep_days: int, full: bool,
    budget_minutes: float,
) -> tuple[str, Selection]:
    """Named companies, every company (a past window), or tonight's selection (incremental, or full)."""
    if company_ids or window:
        mode = "named" if company_ids else "window"
        ids = list_companies(company_ids)
        return mode, Selection(pd.DataFrame({"company_id": ids, "reason": mode}, columns=["company_id", "reason"]))
    return ("full" if full else "incremental"), select_for_tonight(now, sweep_days, full, budget_minutes)


async def _report(results: list[BatchReport], summary: ReconciliationSummary) -> None:
    """What the operator sees: findings by kind (most serious first) and company, the remediations, the counts."""
    queued = [
        {"action": f"queue {row['data_type']}", "company_id": row["company_id"], "connection_id": row["connection_id"]}
        for r in results for row in r.queue_rows
    ]
    settings = [{"action": "set sync settings", "company_id": c, "connection_id": None}
                for r in results for c in r.settings_companies]
    remediations = (settings + queued)[:REPORT_ROWS]
    findings = [r.findings_by_company for r in results]
    names = company_names(sorted(
        {c for f in findings if not f.empty for c in f["company_id"]} | {r["company_id"] for r in remediations}
    ))
    table, total = findings_table(findings, names, REPORT_ROWS)
    await publish_table(
        "reconciliation-findings", table, total=total, full_list="consent findings list --open",
        description=f"Findings by kind, most serious first, and company at {summary.as_of}",
        nothing=f"No findings at {summary.as_of}: what Codat pulls and products read matches consent.",
    )
    done = " planned (dry run)" if summary.dry_run else " done"
    await publish_table(
        "reconciliation-remediations", lead_with(with_company_names(remediations, names), REMEDIATION_COLUMNS),
        total=summary.sync_settings_to_set + summary.pulls_to_queue,
        description="Remediations" + done, nothing="Nothing to remediate" + done + ".",
    )
    lines = [f"# Consent reconciliation, {summary.as_of}" + (" (dry run)" if summary.dry_run else ""), ""]
    if summary.window_start or summary.window_end:
        lines += [f"Window: {summary.window_start or 'start'} to {summary.window_end or 'now'}", ""]
    lines += markdown_table(("finding", "count"), summary.findings)
    lines += ["", *markdown_table(("run", "value"), {
        "selection": summary.selection, "companies by reason": summary.reasons,
        **({"deferred by the request budget": f"{summary.deferred} (estimated {summary.estimated_minutes} min)"}
           if summary.deferred else {}),
        "Codat requests": summary.codat_requests, "Codat requests by reason": summary.codat_requests_by_reason,
        "companies checked": summary.companies, "pulls read": summary.pulls_read,
        "sync settings set": f"{summary.sync_settings_set} of {summary.sync_settings_to_set}",
        "pulls queued": f"{summary.pulls_queued} of {summary.pulls_to_queue}",
        "deletion items opened": summary.deletion_items_opened,
    })]
    await create_markdown_artifact(key="reconciliation-summary", markdown="\n".join(lines))

