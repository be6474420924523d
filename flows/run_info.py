"""What started a flow run, said in its name and tags, so the UI's run lists tell runs apart.

`started_by()`: the `trigger` parameter a prefect.yaml trigger passes (`consent.revoked` -> "revoked",
the receiver's nudge -> "webhook"), "backfill" (a run `consent backfill --via-deployment` created),
"scheduled" (created by the deployment's schedule), "manual" (`prefect deployment run`, or the UI's Run
button), "cli" (called in-process: `consent run ...`, tests).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from prefect.states import Completed, State

from consent_lifecycle.snapshot.store import company_names
from tasks.resources import engine

#: the tag every dry run carries (besides its name and its final state's message saying so)
DRY_RUN_TAG = "dry-run"


def started_by() -> str:
    """How this flow run came to be (see the module docstring)."""
    trigger = flow_run.parameters.get("trigger")
    if trigger:
        return str(trigger).removeprefix("consent.")
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    if run is None:
        return "cli"
    if "backfill" in (run.tags or []):
        return "backfill"
    if run.auto_scheduled:
        return "scheduled"
    return "manual" if run.deployment_id else "cli"


def company_label(company_id: str) -> str:
    """The company's name as a run name part ("Harbour Joinery GmbH" -> harbour-joinery-gmbh) when the
    snapshot knows it, else its id (a name is only for reading: the id is in the run's parameters)."""
    try:
        name = company_names(engine(), [company_id]).get(company_id)
    except Exception:  # noqa: BLE001 - a run name never stops a run
        name = None
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")
    return slug or company_id


def run_name(flow: str, *parts: str | None) -> str:
    """`flow-part-...` from the parts given, `-dry-run` at the end for a dry run."""
    name = "-".join([flow, *(p for p in parts if p)])
    return name + ("-dry-run" if flow_run.parameters.get("dry_run") else "")


async def tag_run(tags: Iterable[str]) -> None:
    """Add `tags` to this flow run (the UI filters runs by tag): a dry run's, what started it."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    merged = sorted({*(run.tags or []), *tags})
    if merged != sorted(run.tags or []):
        async with get_client() as client:
            await client.update_flow_run(run.id, tags=merged)
        run.tags = merged


def run_tags(dry_run: bool) -> list[str]:
    """The tags a run adds to its own: `dry-run` for a dry run, and what started it."""
    return [*([DRY_RUN_TAG] if dry_run else []), started_by()]


def completed(summary: Any) -> State:
    """Completed, in Prefect's own name (the UI's default run filters list only those), with the message
    `summary.message()` (what the run found; "Dry run: ..." first for a dry run); the summary is the result."""
    state = Completed(message=summary.message())
    state.data = summary
    return state
