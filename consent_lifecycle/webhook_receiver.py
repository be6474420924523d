"""The Codat webhook receiver: a small FastAPI app at `POST /webhooks/codat`.

Each delivery is verified (signature, timestamp within 5 minutes: `consent_lifecycle.codat.webhooks`),
recorded once by its `webhook-id`, and a connection event calls `on_connection_event` for its company (the
served app triggers a targeted expiry scan, which reads the company from Codat and updates the snapshot).
Answers: 401 bad or missing signature, 400 stale timestamp or malformed body (nothing recorded, nothing
triggered), 200 `accepted`, 200 `duplicate` for a webhook-id already acted on (not acted on again; a 2xx
stops the sender's retries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy import Engine

from consent_lifecycle.clock import utcnow
from consent_lifecycle.codat.webhooks import CONNECTION_EVENTS, WebhookError, WebhookEvent, verify
from consent_lifecycle.db.bulk import insert_new
from consent_lifecycle.db.models import CodatEvent

OnEvent = Callable[[WebhookEvent], Awaitable[None]]


def create_receiver(
    secret: SecretStr, engine: Engine, on_connection_event: OnEvent, clock: Callable[[], datetime] = utcnow
) -> FastAPI:
    app = FastAPI(title="consent-lifecycle webhooks", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/webhooks/codat")
    async def codat(request: Request) -> JSONResponse:
        body = await request.body()
        now = clock()
        try:
            event = verify(secret, dict(request.headers), body, now)
        except WebhookError as exc:
            status = 400 if "timestamp" in str(exc) or "body" in str(exc) or "generatedDate" in str(exc) else 401
            return JSONResponse({"error": str(exc)}, status_code=status)
        webhook_id = request.headers["webhook-id"]
        row = {"id": webhook_id, "event_type": event.event_type, "company_id": event.company_id,
               "generated_at": event.generated_at, "received_at": now, "body": body.decode(errors="replace")}
        with engine.begin() as db:
            first = insert_new(db, CodatEvent.__table__, [row], key="id")
        if not first:
            return JSONResponse({"status": "duplicate", "id": webhook_id})
        if event.event_type in CONNECTION_EVENTS and event.company_id:
            await on_connection_event(event)
        return JSONResponse({"status": "accepted", "id": webhook_id, "event_type": event.event_type})

    return app
