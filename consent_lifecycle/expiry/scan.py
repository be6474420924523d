"""What scanning Codat's connections came to: each batch's counts, planned notices and the head of the
operator's table (`BatchScan`), and the run's summary (`ScanSummary`, the flow's result)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

import pandas as pd

from consent_lifecycle.expiry.classify import (
    CLASSES,
    NOTIFICATION_COLUMNS,
    REPORT_COLUMNS,
    attention_table,
    class_counts,
    plan_notifications,
    top_attention,
)

#: rows of the operator's attention table
REPORT_LIMIT = 1000
CHANGE_KEYS = ("companies", "connection_count", "new", "changed", "vanished")


@dataclass(frozen=True)
class BatchScan:
    """What scanning a batch hands back: counts, the notices it plans and the head of its attention table;
    small whatever the batch (the classified connections themselves are not kept)."""

    change: dict[str, int]
    classes: dict[str, int]
    planned: pd.DataFrame
    attention: pd.DataFrame
    #: requests sent to Codat to read the batch (retries included)
    codat_requests: int = 0

    @classmethod
    def of(
        cls, change: dict[str, int], classified: pd.DataFrame, now: datetime, codat_requests: int = 0
    ) -> BatchScan:
        """A batch's scan from its snapshot change and its connections classified at `now`."""
        return cls(
            change=change,
            classes=class_counts(classified),
            planned=plan_notifications(classified, now),
            attention=attention_table(classified, REPORT_LIMIT),
            codat_requests=codat_requests,
        )

    @classmethod
    def combine(cls, parts: Sequence[BatchScan]) -> BatchScan:
        """The scans of consecutive parts, in order, as one."""
        planned = [part.planned for part in parts if len(part.planned)]
        attention = [part.attention for part in parts if len(part.attention)]
        return cls(
            change={key: sum(part.change.get(key, 0) for part in parts) for key in CHANGE_KEYS},
            classes={name: sum(part.classes[name] for part in parts) for name in CLASSES},
            planned=pd.concat(planned, ignore_index=True) if planned else pd.DataFrame(columns=NOTIFICATION_COLUMNS),
            attention=(
                top_attention(pd.concat(attention, ignore_index=True), REPORT_LIMIT)
                if attention
                else pd.DataFrame(columns=REPORT_COLUMNS)
            ),
            codat_requests=sum(part.codat_requests for part in parts),
        )


@dataclass(frozen=True)
class ScanSummary:
    """A scan's result. The last three are None where they do not apply (and left out of `as_dict`):
    notices queued and their delivery in a dry run, companies retired in a scan of named companies."""

    as_of: str
    dry_run: bool
    notifications_planned: int
    companies: int
    new: int
    changed: int
    vanished: int
    #: connections by class, every class listed
    classes: dict[str, int]
    notifications_queued: int | None = None
    delivery: dict[str, int] | None = None
    retired_companies: int | None = None
    #: requests sent to Codat (retries included)
    codat_requests: int = 0

    @classmethod
    def of(cls, scanned: BatchScan, *, as_of: str, dry_run: bool) -> ScanSummary:
        change = scanned.change
        return cls(
            as_of=as_of, dry_run=dry_run, notifications_planned=len(scanned.planned),
            companies=change["companies"], new=change["new"], changed=change["changed"],
            vanished=change["vanished"], classes=scanned.classes, codat_requests=scanned.codat_requests,
        )

    def with_(self, **values: Any) -> ScanSummary:
        return replace(self, **values)

    def message(self) -> str:
        """The run's final state message: what needs attention and what was sent ("Dry run: ..." first)."""
        c = self.classes
        text = (f"{c.get('expired', 0)} expired, {c.get('expiring', 0)} expiring, {c.get('stale', 0)} stale of "
                f"{sum(c.values())} connections; {self.notifications_planned} notices due")
        if self.dry_run:
            return f"Dry run: {text}; nothing written or sent"
        return text + f", {self.notifications_queued or 0} queued"

    def as_dict(self) -> dict[str, Any]:
        optional = ("notifications_queued", "delivery", "retired_companies")
        return {k: v for k, v in asdict(self).items() if v is not None or k not in optional}
