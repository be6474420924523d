"""retention-enforcement: delete what no remaining consent covers, once its retention has passed.

Plan (every run, idempotent): items for what consent covered once and covers no longer, cancelled when a
consent covers it again, held under a legal hold. Then, if the safety gate lets it
(`consent_lifecycle.retention.gate`: not a dry run, the kill switch on, no more than `max_deletions` due),
execute the due items in batches, each in its own transaction under the company's lock
(`consent_lifecycle.retention.execute`): never anything an active consent covers at that moment, one
receipt per item.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from consent_lifecycle.clock import iso, utcnow
from consent_lifecycle.operator_view import lead_with, markdown_table, with_company_names
from consent_lifecycle.retention.gate import deletion_gate, run_ending
from consent_lifecycle.retention.store import Plan
from consent_lifecycle.retention.summary import RetentionSummary
from flows.run_info import company_label, run_name, run_tags, started_by, tag_run
from tasks.artifacts import publish_table
from tasks.retention import (
    count_due,
    deletions_enabled,
    due_batch,
    execute_items,
    explain_over_cap,
    plan_deletions,
)
from tasks.snapshot import company_names

#: the operator's columns, in this order: what, when due, whose; the long key last
ITEM_COLUMNS = ["due_at", "scope", "data_type", "company", "status", "reason", "company_id", "connection_id", "id"]
ROWS = 1000


def _run_name() -> str:
    """`retention-<day>-<what started it>[-<company>][-dry-run]`, e.g.
    retention-2026-12-06-revoked-harbour-joinery-gmbh-dry-run (the company's name, else its id)."""
    parameters = flow_run.parameters
    now = parameters.get("now") or flow_run.scheduled_start_time
    companies = parameters.get("company_ids") or []
    scope = (company_label(companies[0]) if len(companies) == 1 else f"{len(companies)}-companies") if companies else None
    return run_name("retention", f"{now:%Y-%m-%d}" if now else None, started_by(), scope)


@flow(name="retention-enforcement", flow_run_name=_run_name)
async def retention_enforcement(
    company_ids: list[str] | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    max_deletions: int = 1000,
    batch_size: int = 200,
    trigger: str | None = None,
):
    """Plan deletion items, then delete what is due (unless a dry run, the kill switch, or more than
    `max_deletions` due); `trigger` is what started the run when an automation did (its event), for its name
    and tags."""
    logger = get_run_logger()
    await tag_run(run_tags(dry_run))
    now = now or utcnow()
    planned = plan_deletions(now, company_ids)
    due = count_due(now, company_ids)  # a count (and the highest id), never the ids themselves
    logger.info("Planned %d new deletion items, cancelled %d (covered again), %d held; %d due at %s",
                planned.planned_new, planned.cancelled, planned.held, due.count, iso(now))
    gate = deletion_gate(
        due.count, dry_run=dry_run, enabled=await deletions_enabled(), max_deletions=max_deletions
    )
    if gate.over_cap:  # say where the due items come from and what to do next
        gate = replace(gate, message=explain_over_cap(now, company_ids, due.count, max_deletions))
    outcomes: list[dict[str, Any]] = []
    if gate.proceed:
        after = None  # keyset paging over (due_at, id): each task gets at most `batch_size` ids
        while batch := due_batch(now, company_ids, batch_size, due.max_id, after):
            outcomes += await execute_items([item_id for item_id, _ in batch], now)
            after = batch[-1][::-1]
    summary = RetentionSummary.of(
        as_of=iso(now), dry_run=dry_run, planned_new=planned.planned_new, cancelled=planned.cancelled,
        held=planned.held, due=due.count, outcomes=[o["status"] for o in outcomes],
    )
    await _report(planned, outcomes, summary)
    ending = run_ending(gate, outcomes)
    # Prefect's own state names (the UI's default filters list only those); the message says what happened
    state = (Failed if ending.failed else Completed)(message=ending.message)
    state.data = summary  # the summary is the run's result either way
    return state


async def _report(planned: Plan, outcomes: list[dict[str, Any]], summary: RetentionSummary) -> None:
    executed = [o for o in outcomes if o["status"] == "done"]
    failed = [o for o in outcomes if o["status"] in ("failed", "retrying")]
    parked = [{**i, "status": "held"} for i in planned.held_items] + [
        {**i, "status": "cancelled"} for i in planned.cancelled_items
    ]
    names = company_names(sorted({i["company_id"] for i in planned.planned_items + parked}))
    await publish_table(
        "retention-planned", _items(planned.planned_items, names), total=planned.planned_total,
        full_list="consent deletions list --status planned",
        description=f"Deletion items planned, soonest due first ({summary.due} due at {summary.as_of})",
        nothing=f"Nothing planned for deletion at {summary.as_of}.",
    )
    await publish_table(
        "retention-executed", lead_with(executed[:ROWS], ["item_id", "receipt_id", "codat_status", "rows_purged"]),
        total=len(executed), full_list="consent deletions receipts",
        description=f"Deletions executed at {summary.as_of}, with receipt ids",
        nothing=f"Nothing deleted at {summary.as_of}" + (" (dry run)." if summary.dry_run else "."),
    )
    await publish_table(
        "retention-held-cancelled", _items(parked[:ROWS], names), total=planned.held + planned.cancelled,
        full_list="consent deletions list --status held",
        description="Items held by a legal hold or cancelled because a consent covers them again",
        nothing=f"No item held or cancelled at {summary.as_of}.",
    )
    await publish_table(
        "retention-failed", lead_with(failed[:ROWS], ["status", "error", "item_id"]), total=len(failed),
        full_list="consent deletions list --status planned",
        description="Deletions that failed (retried next run; failed for good after 5 attempts)",
        nothing=f"No deletion failed at {summary.as_of}.",
    )
    lines = [f"# Retention enforcement, {summary.as_of}" + (" (dry run)" if summary.dry_run else ""), ""]
    lines += markdown_table(("", "items"), summary.counts())
    await create_markdown_artifact(key="retention-summary", markdown="\n".join(lines))


def _items(rows: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """Deletion items as the operator reads them: ITEM_COLUMNS first, times as ISO 8601 UTC text, key last."""
    plain = [{k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows]
    return lead_with(with_company_names(plain, names), ITEM_COLUMNS)
