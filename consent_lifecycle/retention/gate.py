"""Whether a retention run may delete: the safety gate in front of every deletion. Pure.

In order: a dry run deletes nothing; nothing due, nothing to do; the operators' kill switch (the Prefect
Variable `consent-deletions-enabled`, read by the flow) stops execution; more items due than
`max_deletions` stops the run as failed, before anything is deleted, for a human to look at the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the Prefect Variable operators set to false to stop every deletion
KILL_SWITCH = "consent-deletions-enabled"


@dataclass(frozen=True)
class Gate:
    """`proceed`: execute the due items. Otherwise the run ends here: `failed` or not, with `message` saying
    why. The run's state keeps Prefect's own name (Completed, Failed): the UI's default run filters list
    those names only, so a custom one (say "Dry run") would hide the run; the message says what happened."""

    proceed: bool
    failed: bool = False
    message: str | None = None
    #: stopped by `max_deletions` (the flow then says where the due items come from: retention.explain)
    over_cap: bool = False


def deletion_gate(due: int, *, dry_run: bool, enabled: bool, max_deletions: int) -> Gate:
    """The gate for `due` deletion items."""
    if dry_run:
        return Gate(False, message=f"Dry run: {due} due, nothing deleted")
    if not due:
        return Gate(False, message="Nothing due: no deletion item is due")
    if not enabled:
        return Gate(False, message=f"Deletions disabled: {KILL_SWITCH} is off, {due} due, nothing deleted")
    if due > max_deletions:
        return Gate(
            False,
            failed=True,
            over_cap=True,
            message=f"{due} deletions due exceed max_deletions={max_deletions}: nothing deleted; "
            "check the plan, then rerun with a higher max_deletions",
        )
    return Gate(True)


def kill_switch_enabled(value: object) -> bool:
    """The kill switch's value read as "deletions enabled" (enabled unless it says otherwise)."""
    return str(value).strip().lower() not in {"false", "0", "no", "off", "disabled"}


def run_ending(gate: Gate, outcomes: list[dict[str, object]]) -> Gate:
    """How the run ends, given its gate and what executing the due items came to (`Outcome.as_dict()`s):
    as the gate said when it stopped the run; failed when an item failed (it is retried next run);
    otherwise completed, saying how many were deleted."""
    if not gate.proceed:
        return gate
    failed = [o for o in outcomes if o["status"] in ("failed", "retrying")]
    if failed:
        return Gate(False, failed=True, message=f"{len(failed)} of {len(outcomes)} deletions failed: {failed[0]['error']}")
    done = sum(o["status"] == "done" for o in outcomes)
    return Gate(True, message=f"{done} deletions executed")
