"""Ledger changes as Prefect events, so automations can react in seconds (see prefect.yaml's `triggers:`).

`consent.revoked` and `consent.disconnected`, about the resource `consent.company.<company id>`, carry
the change's impact (what it deletes and keeps, `Impact.as_dict()`) as their payload. The
retention-enforcement deployment's trigger plans that company's deletions on either.
"""

from __future__ import annotations

import logging

from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL

from consent_lifecycle.ledger import Impact

EVENT_PREFIX = "consent."
DRAIN_TIMEOUT_SECONDS = 10.0


def company_resource(company_id: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"consent.company.{company_id}",
        "prefect.resource.name": company_id,
        "consent.company-id": company_id,
    }


def emit_ledger_change(change: str, effect: Impact) -> None:
    """Emit `consent.<change>` for the company `effect` is about (`Ledger(on_change=...)`)."""
    emit_event(
        event=EVENT_PREFIX + change,
        resource=company_resource(effect.company_id),
        payload=effect.as_dict(),
    )


def server_configured() -> bool:
    """Whether a Prefect server is configured (PREFECT_API_URL); without one there is nobody to tell, and
    emitting would start a throwaway ephemeral server."""
    return bool(PREFECT_API_URL.value())


def flush(timeout: float = DRAIN_TIMEOUT_SECONDS) -> None:
    """Send what is queued before a short-lived process (the CLI) exits, without the worker's
    "Still processing items" progress line on the command's stderr."""
    logging.getLogger(EventsWorker.__name__).setLevel(logging.ERROR)
    EventsWorker.drain_all(timeout=timeout)
