"""retention-enforcement: delete what no remaining consent covers, once its retention has passed.

Plan (every run, idempotent): items for what consent covered once and covers no longer, cancelled when a
consent covers it again, held under a legal hold. Then, if the safety gate lets it
(`consent_lifecycle.retention.gate`: not a dry run, the kill switch on, no more than `max_deletions` due),
execute the due items in batches, each in its own transaction under the company's lock
(`consent_lifecycle.retention.execute`): never anything an active consent covers at that moment, one
receipt per item.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from consent_lifecycle.clock import iso, utcnow
from consent_lifecycle.retention.gate import deletion_gate, run_ending
from consent_lifecycle.retention.store import Plan
from consent_lifecycle.retention.summary import RetentionSummary
from tasks.retention import count_due, deletions_enabled, due_batch, execute_items, plan_deletions


def _run_name() -> str:
    parameters = flow_run.parameters
    now = parameters.get("now") or flow_run.scheduled_start_time
    name = f"retention-{now:%Y-%m-%d}" if now else "retention"
    return name + ("-dry-run" if parameters.get("dry_run") else "")


@flow(name="retention-enforcement", flow_run_name=_run_name)
async def retention_enforcement(
    company_ids: list[str] | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    max_deletions: int = 1000,
    batch_size: int = 200,
):
    now = now or utcnow()
    planned = plan_deletions(now, company_ids)
    due = count_due(now, company_ids)  # a count (and the highest id), never the ids themselves
    gate = deletion_gate(
        due.count, dry_run=dry_run, enabled=await deletions_enabled(), max_deletions=max_deletions
    )
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
    await _report(planned, due.count, outcomes, summary)
    ending = run_ending(gate, outcomes)
    named = {"name": ending.name} if ending.name else {}
    state = (Failed if ending.failed else Completed)(message=ending.message, **named)
    state.data = summary  # the summary is the run's result either way
    return state


async def _report(planned: Plan, due: int, outcomes: list[dict[str, Any]], summary: RetentionSummary) -> None:
    executed = [o for o in outcomes if o["status"] == "done"]
    await create_table_artifact(
        key="retention-planned",
        table=_plain(planned.planned_items) or [{"id": None, "due_at": None}],
        description=f"Deletion items planned (soonest due first; {due} due at {summary.as_of})",
    )
    await create_table_artifact(
        key="retention-executed",
        table=executed[:1000] or [{"item_id": None, "receipt_id": None}],
        description=f"Deletions executed at {summary.as_of}, with receipt ids",
    )
    await create_table_artifact(
        key="retention-held-cancelled",
        table=_plain(
            [{**i, "outcome": "held"} for i in planned.held_items]
            + [{**i, "outcome": "cancelled"} for i in planned.cancelled_items]
        )[:1000]
        or [{"outcome": None}],
        description="Items held by a legal hold or cancelled because a consent covers them again",
    )
    failed = [o for o in outcomes if o["status"] in ("failed", "retrying")]
    await create_table_artifact(
        key="retention-failed",
        table=failed[:1000] or [{"item_id": None, "error": None}],
        description="Deletions that failed (retried next run; failed for good after 5 attempts)",
    )
    lines = [
        f"# Retention enforcement, {summary.as_of}" + (" (dry run)" if summary.dry_run else ""),
        "",
    ]
    lines += ["| | items |", "|---|---|"] + [
        f"| {k} | {v} |" for k, v in summary.counts().items()
    ]
    lines += ["", f"Due: {due}"]
    await create_markdown_artifact(key="retention-summary", markdown="\n".join(lines))


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows an artifact can hold: times as ISO 8601 UTC text."""
    return [{k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows]
