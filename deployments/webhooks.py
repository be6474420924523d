"""The Codat webhook receiver as served: a connection event creates a targeted run of the deployed
connection-expiry-scan for that company (idempotent per webhook id), so the snapshot catches up in seconds.

`python -m deployments.webhooks --port 8720` (needs CONSENT_CODAT_WEBHOOK_SECRET and a Prefect API with the
deployments), beside `make serve`.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from prefect.deployments import run_deployment

from consent_lifecycle.codat.webhooks import WebhookEvent
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.migrate import upgrade
from consent_lifecycle.settings import get_settings
from consent_lifecycle.webhook_receiver import create_receiver

EXPIRY_SCAN = "connection-expiry-scan/connection-expiry-scan"


async def targeted_expiry_scan(event: WebhookEvent) -> None:
    await run_deployment(
        EXPIRY_SCAN, parameters={"company_ids": [event.company_id]}, timeout=0, as_subflow=False,
        idempotency_key=f"codat-webhook:{event.id}", tags=["webhook", event.event_type],
    )


def receiver_app() -> FastAPI:
    settings = get_settings()
    if settings.codat_webhook_secret is None:
        raise SystemExit("CONSENT_CODAT_WEBHOOK_SECRET is not set: the receiver cannot check signatures")
    upgrade(settings.database_url)
    return create_receiver(settings.codat_webhook_secret, make_engine(settings.database_url), targeted_expiry_scan)


def main() -> None:
    parser = argparse.ArgumentParser(description="Receive Codat webhooks at POST /webhooks/codat.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8720)
    args = parser.parse_args()
    uvicorn.run(receiver_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
