"""The webhook receiver as served (`make serve` runs it on port 8720):

- `POST /webhooks/codat`: a Codat connection event creates a targeted run of the deployed
  connection-expiry-scan for that company (idempotent per webhook id), so the snapshot catches up in seconds;
- `POST /alerts`: the operators' inbox of a local setup, where the failure automation posts
  (deployments/automations.py) when no CONSENT_ALERT_WEBHOOK_URL is set: each alert is logged and appended
  to `--alerts-file` as one JSON line.

`python -m deployments.webhooks --port 8720` (needs CONSENT_CODAT_WEBHOOK_SECRET and a Prefect API with the
deployments).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from prefect.deployments import run_deployment

from consent_lifecycle.clock import iso, utcnow
from consent_lifecycle.codat.webhooks import WebhookEvent
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.migrate import upgrade
from consent_lifecycle.settings import get_settings
from consent_lifecycle.webhook_receiver import create_receiver

EXPIRY_SCAN = "connection-expiry-scan/connection-expiry-scan"
DEFAULT_ALERTS_FILE = Path(".consent/alerts.jsonl")
logger = logging.getLogger("consent.alerts")


async def targeted_expiry_scan(event: WebhookEvent) -> None:
    await run_deployment(
        EXPIRY_SCAN, parameters={"company_ids": [event.company_id]}, timeout=0, as_subflow=False,
        idempotency_key=f"codat-webhook:{event.id}", tags=["webhook", event.event_type],
    )


def receiver_app(alerts_file: Path = DEFAULT_ALERTS_FILE) -> FastAPI:
    settings = get_settings()
    if settings.codat_webhook_secret is None:
        raise SystemExit("CONSENT_CODAT_WEBHOOK_SECRET is not set: the receiver cannot check signatures")
    upgrade(settings.database_url)
    app = create_receiver(settings.codat_webhook_secret, make_engine(settings.database_url), targeted_expiry_scan)
    alerts_file.parent.mkdir(parents=True, exist_ok=True)

    @app.post("/alerts")
    async def alert(request: Request) -> dict[str, Any]:
        body = await request.json()
        logger.warning("ALERT %s", body.get("title", ""))
        with alerts_file.open("a") as out:
            out.write(json.dumps({"received_at": iso(utcnow()), **body}) + "\n")
        return {"status": "logged"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Receive Codat webhooks at POST /webhooks/codat.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8720)
    parser.add_argument("--alerts-file", type=Path, default=DEFAULT_ALERTS_FILE)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(receiver_app(args.alerts_file), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
