"""The flows the benchmark can run: one `FlowSpec` per flow, keyed by its Prefect name.

To benchmark another flow, add one entry to `FLOWS`: where the flow is, the parameters it is called with
(given the sandbox's frozen `now`), and how to read the connections it saw and the notifications it queued
from the summary it returns. `raw_page_size` set means the flow pages `/companies` at that size, so the
benchmark also times raw paging of the same pages for comparison.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Summary = Mapping[str, Any]


@dataclass(frozen=True)
class FlowSpec:
    name: str
    entrypoint: str  # "package.module:flow_function"
    parameters: Callable[[datetime], dict[str, Any]]
    connections_seen: Callable[[Summary], int | None]
    notifications_queued: Callable[[Summary], int | None]
    raw_page_size: int | None = None

    def load(self) -> Any:
        """The Prefect flow object (imports Prefect and the flow's module)."""
        module, _, attribute = self.entrypoint.partition(":")
        return getattr(importlib.import_module(module), attribute)


EXPIRY_SCAN_PAGE_SIZE = 5000


def _expiry_scan_parameters(now: datetime) -> dict[str, Any]:
    return {"now": now, "page_size": EXPIRY_SCAN_PAGE_SIZE}


def _classified_connections(summary: Summary) -> int:
    return sum(summary["classes"].values())


def _queued(summary: Summary) -> int | None:
    return summary.get("notifications_queued")


FLOWS: dict[str, FlowSpec] = {
    spec.name: spec
    for spec in (
        FlowSpec(
            name="connection-expiry-scan",
            entrypoint="flows.connection_expiry_scan:connection_expiry_scan",
            parameters=_expiry_scan_parameters,
            connections_seen=_classified_connections,
            notifications_queued=_queued,
            raw_page_size=EXPIRY_SCAN_PAGE_SIZE,
        ),
    )
}
