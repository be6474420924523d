"""The webhook receiver as served (`consent webhooks serve`; `make serve` runs it on port 8720):

- `POST /webhooks/codat`: each verified Codat delivery is stored in the inbox (`codat_events`) and answered
  at once (consent_lifecycle/webhook_receiver.py); then, when PREFECT_API_URL is set, a Prefect event
  `consent.codat.events-received` (at most one a second) triggers the `codat-events` deployment, which
  processes the inbox (its schedule is the safety net when an event is not emitted);
- `POST /alerts`: the operators' inbox of a local setup, where the failure automation posts
  (deployments/automations.py) when no CONSENT_ALERT_WEBHOOK_URL is set: each alert is logged and appended
  to `--alerts-file` as one JSON line.

`python -m deployments.webhooks --port 8720` is the same as `consent webhooks serve --port 8720` (needs
CONSENT_CODAT_WEBHOOK_SECRET).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

from consent_lifecycle.clock import iso, utcnow
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.migrate import upgrade
from consent_lifecycle.settings import get_settings
from consent_lifecycle.webhook_receiver import create_receiver

DEFAULT_ALERTS_FILE = Path(".consent/alerts.jsonl")
#: the Prefect event the `codat-events` deployment's trigger expects, and the resource it is about
EVENTS_RECEIVED = "consent.codat.events-received"
INBOX_RESOURCE = "consent.codat.inbox"
logger = logging.getLogger("consent.alerts")
nudge_logger = logging.getLogger("consent.webhooks")


class Nudger:
    """Calls `emit` at most once per `interval` seconds, trailing: a delivery stored while a nudge is
    waiting is covered by that nudge, so the last event of a burst is always followed by one. Failures are
    logged, never raised: the events are already safe in the inbox and the schedule drains it anyway."""

    def __init__(self, emit: Callable[[], None], interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.emit, self.interval, self.clock = emit, interval, clock
        self.last = float("-inf")
        self.waiting = False

    def __call__(self) -> None:
        if self.waiting:
            return
        delay = max(0.0, self.last + self.interval - self.clock())
        self.waiting = True
        try:
            asyncio.get_running_loop().call_later(delay, self._fire)
        except RuntimeError:  # no event loop (a direct call): nudge now
            self._fire()

    def _fire(self) -> None:
        self.waiting, self.last = False, self.clock()
        try:
            self.emit()
        except Exception as exc:  # noqa: BLE001 - a lost nudge costs a schedule interval, nothing more
            nudge_logger.warning("could not emit %s: %s", EVENTS_RECEIVED, type(exc).__name__)


def emit_events_received() -> None:
    from prefect.events import emit_event

    emit_event(event=EVENTS_RECEIVED, resource={"prefect.resource.id": INBOX_RESOURCE})


def receiver_app(alerts_file: Path = DEFAULT_ALERTS_FILE) -> FastAPI:
    settings = get_settings()
    if settings.codat_webhook_secret is None:
        raise SystemExit("CONSENT_CODAT_WEBHOOK_SECRET is not set: the receiver cannot check signatures")
    upgrade(settings.database_url)
    nudge = Nudger(emit_events_received) if os.environ.get("PREFECT_API_URL") else None
    app = create_receiver(settings.codat_webhook_secret, make_engine(settings.database_url), nudge)
    alerts_file.parent.mkdir(parents=True, exist_ok=True)

    @app.post("/alerts")
    async def alert(request: Request) -> dict[str, Any]:
        body = await request.json()
        logger.warning("ALERT %s", body.get("title", ""))
        with alerts_file.open("a") as out:
            out.write(json.dumps({"received_at": iso(utcnow()), **body}) + "\n")
        return {"status": "logged"}

    return app


def serve(host: str, port: int, alerts_file: Path = DEFAULT_ALERTS_FILE) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(receiver_app(alerts_file), host=host, port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description="Receive Codat webhooks at POST /webhooks/codat.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8720)
    parser.add_argument("--alerts-file", type=Path, default=DEFAULT_ALERTS_FILE)
    args = parser.parse_args()
    serve(args.host, args.port, args.alerts_file)


if __name__ == "__main__":
    main()
