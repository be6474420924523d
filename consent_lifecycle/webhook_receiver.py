"""The Codat webhook receiver: a small FastAPI app at `POST /webhooks/codat` that only fills the inbox.

Each delivery is verified (`consent_lifecycle.codat.webhooks`: Standard Webhooks signature, timestamp within
5 minutes of `now`), stored whole in `codat_events` by its `webhook-id` (insert-if-new) and answered:
200 `stored`, 200 `duplicate` for a webhook-id already stored (a 2xx stops the sender's retries; stored
once), 401 for any refused signature, 400 for a signed body that is not a Codat envelope. Nothing else
happens in the request: the `codat-events` flow processes the inbox. After a new event is stored, `nudge()`
is called (the served app emits a debounced Prefect event that triggers that flow); a nudge that fails is
the nudger's concern, the event is already safe in the inbox.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy import Engine

from consent_lifecycle.clock import utcnow
from consent_lifecycle.codat.webhooks import WebhookRefused, verify
from consent_lifecycle.db.bulk import insert_new
from consent_lifecycle.db.models import ID, KEY, NAME, CodatEvent

#: the longest values the inbox's columns hold (a longer one is a malformed delivery, not a 500)
_LIMITS = (("webhook-id", NAME), ("eventType", KEY), ("company id", ID))


def create_receiver(
    secret: SecretStr, engine: Engine, nudge: Callable[[], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    app = FastAPI(title="consent-lifecycle webhooks", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/webhooks/codat")
    async def codat(request: Request) -> JSONResponse:
        body = await request.body()
        now = clock()
        try:
            event = verify(secret, dict(request.headers), body, now)
            for (name, limit), value in zip(_LIMITS, (event.webhook_id, event.event_type, event.company_id),
                                            strict=True):
                if value is not None and len(value) > limit:
                    raise WebhookRefused(400, f"{name} is longer than {limit} characters")
        except WebhookRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        row = {
            "id": event.webhook_id, "event_type": event.event_type, "company_id": event.company_id,
            "generated_at": event.generated_at, "received_at": now, "body": body.decode(),
        }
        with engine.begin() as db:
            first = insert_new(db, CodatEvent.__table__, [row], key="id")
        if not first:
            return JSONResponse({"status": "duplicate", "id": event.webhook_id})
        if nudge is not None:
            nudge()
        return JSONResponse({"status": "stored", "id": event.webhook_id, "event_type": event.event_type})

    return app
