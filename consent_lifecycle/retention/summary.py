"""What a retention run did, as the flow returns it and the CLI prints it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

#: what an item's execution can come to (`retention.execute.Outcome.status`)
OUTCOMES = ("done", "cancelled", "held", "failed", "retrying", "skipped")


@dataclass(frozen=True)
class RetentionSummary:
    as_of: str
    dry_run: bool
    #: items the plan opened, cancelled (covered again) and holds (legal hold) this run
    planned_new: int
    cancelled: int
    held: int
    #: items due at `as_of` when the run counted them
    due: int
    #: what executing the due items came to, by outcome
    executed_done: int = 0
    cancelled_at_execution: int = 0
    held_at_execution: int = 0
    failed_at_execution: int = 0
    retrying_at_execution: int = 0
    skipped_at_execution: int = 0

    @classmethod
    def of(cls, *, as_of: str, dry_run: bool, planned_new: int, cancelled: int, held: int, due: int,
           outcomes: Iterable[str] = ()) -> RetentionSummary:
        """The summary of a run whose executed items ended in `outcomes` (their statuses)."""
        statuses = list(outcomes)
        counts = {_field(status): statuses.count(status) for status in OUTCOMES}
        return cls(as_of=as_of, dry_run=dry_run, planned_new=planned_new, cancelled=cancelled, held=held,
                   due=due, **counts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def counts(self) -> dict[str, int]:
        """The item counts (every field but the time and the dry-run flag), in order."""
        return {key: value for key, value in self.as_dict().items() if key not in ("as_of", "dry_run")}


def _field(status: str) -> str:
    return "executed_done" if status == "done" else f"{status}_at_execution"
