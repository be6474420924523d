"""retention-enforcement: delete what no remaining consent covers, once its retention has passed.

Plan (every run, idempotent): items for what consent covered once and covers no longer, cancelled when a
consent covers it again, held under a legal hold. Then execute the due items in batches, each in its own
transaction under the company's lock (see `consent_lifecycle.db.retention`): never anything an active
consent covers at that moment, one receipt per item. Safety: `dry_run` plans and reports only; the Prefect
Variable `consent-deletions-enabled` stops execution; more than `max_deletions` due stops the run (Failed)
before anything is deleted, for a human to look.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from consent_lifecycle.clock import iso, utcnow
from tasks.retention import (
    KILL_SWITCH,
    count_due,
    deletions_enabled,
    due_batch,
    execute_items,
    plan_deletions,
)


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
    summary: dict[str, Any] = {
        "as_of": iso(now),
        "dry_run": dry_run,
        "planned_new": planned["planned_new"],
        "cancelled": planned["cancelled"],
        "held": planned["held"],
        "due": due["count"],
    }
    outcomes: list[dict[str, Any]] = []
    if dry_run:
        state = Completed(message=f"dry run: {due['count']} due, nothing deleted", name="Dry run")
    elif not due["count"]:
        state = Completed(message="no deletion item is due", name="Nothing due")
    elif not await deletions_enabled():
        state = Completed(
            message=f"{KILL_SWITCH} is off: {due['count']} due, nothing deleted", name="Deletions disabled"
        )
    elif due["count"] > max_deletions:
        state = Failed(
            message=f"{due['count']} deletions due exceed max_deletions={max_deletions}: nothing deleted; "
            "check the plan, then rerun with a higher max_deletions"
        )
    else:
        after = None  # keyset paging over (due_at, id): each task gets at most `batch_size` ids
        while batch := due_batch(now, company_ids, batch_size, due["max_id"], after):
            outcomes += await execute_items([item_id for item_id, _ in batch], now)
            after = batch[-1][::-1]
        state = None
    for status in ("done", "cancelled", "held", "failed", "retrying", "skipped"):
        summary[f"executed_{status}" if status == "done" else status + "_at_execution"] = sum(
            o["status"] == status for o in outcomes
        )
    await _report(planned, due["count"], outcomes, summary)
    if state is None:
        failed = [o for o in outcomes if o["status"] in ("failed", "retrying")]
        state = (
            Failed(message=f"{len(failed)} of {len(outcomes)} deletions failed: {failed[0]['error']}")
            if failed
            else Completed(message=f"{summary['executed_done']} deletions executed")
        )
    state.data = summary  # the summary is the run's result either way
    return state


async def _report(planned: dict[str, Any], due: int, outcomes: list[dict[str, Any]], summary: dict) -> None:
    executed = [o for o in outcomes if o["status"] == "done"]
    await create_table_artifact(
        key="retention-planned",
        table=_plain(planned["planned_items"]) or [{"id": None, "due_at": None}],
        description=f"Deletion items planned (soonest due first; {due} due at {summary['as_of']})",
    )
    await create_table_artifact(
        key="retention-executed",
        table=executed[:1000] or [{"item_id": None, "receipt_id": None}],
        description=f"Deletions executed at {summary['as_of']}, with receipt ids",
    )
    await create_table_artifact(
        key="retention-held-cancelled",
        table=_plain(
            [{**i, "outcome": "held"} for i in planned["held_items"]]
            + [{**i, "outcome": "cancelled"} for i in planned["cancelled_items"]]
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
        f"# Retention enforcement, {summary['as_of']}" + (" (dry run)" if summary["dry_run"] else ""),
        "",
    ]
    lines += ["| | items |", "|---|---|"] + [
        f"| {k} | {v} |" for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)
    ]
    lines += ["", f"Due: {due}"]
    await create_markdown_artifact(key="retention-summary", markdown="\n".join(lines))


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows an artifact can hold: times as ISO 8601 UTC text."""
    return [{k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows]
