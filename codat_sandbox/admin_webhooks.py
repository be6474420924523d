"""Admin routes of the sandbox's webhooks (not Codat's): the shortcut consumer, signing secrets, the
retry scale, recent delivery attempts, and draining what is pending (so a test can wait for deliveries
instead of sleeping)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from codat_sandbox.admin import bad_field, body_object, sandbox
from codat_sandbox.api import json_response

router = APIRouter(prefix="/_sandbox/webhooks")

MAX_DRAIN_SECONDS = 600.0


@router.post("")
async def set_webhooks(request: Request) -> Response:
    """Send every Codat event to `url`, signed with `secret`: creates (or replaces) one consumer of all
    event types; an empty body removes it."""
    data = await body_object(request, required=False)
    url, secret = data.get("url"), data.get("secret")
    if (url is None) != (secret is None) or any(
        v is not None and not isinstance(v, str) for v in (url, secret)
    ):
        raise bad_field("url", "give both url and secret as strings, or neither")
    consumer = sandbox(request).consumers.replace_shortcut(url, secret)
    return json_response({"url": url, "enabled": url is not None, "id": consumer.id if consumer else None})


@router.get("/deliveries")
async def webhook_deliveries(request: Request) -> Response:
    """Recent attempts, oldest first: id (the webhook-id), event_type, consumer_id, attempt, status (HTTP,
    or null without an answer) and outcome (delivered, retrying, failed, dropped)."""
    return json_response(sandbox(request).delivery.attempts.as_json())


def _settings(request: Request) -> dict[str, float]:
    return {"retry_scale": sandbox(request).delivery.retry_scale}


@router.get("/settings")
async def get_settings(request: Request) -> Response:
    return json_response(_settings(request))


@router.post("/settings")
async def set_settings(request: Request) -> Response:
    """`retry_scale` multiplies Codat's retry delays (5 s ... 10 h): 0.001 makes them milliseconds."""
    data = await body_object(request)
    unknown = sorted(set(data) - {"retry_scale"})
    if unknown:
        raise bad_field(unknown[0], "unknown webhook setting (known: retry_scale)")
    scale = data.get("retry_scale")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 <= scale <= 1000:
            raise bad_field("retry_scale", "must be a number >= 0 and <= 1000")
        sandbox(request).delivery.retry_scale = float(scale)
    return json_response(_settings(request))


@router.post("/drain")
async def drain(request: Request) -> Response:
    """Wait until no delivery is pending or in flight: 200 with the attempt totals, or 408 with what is
    still pending after `timeout` seconds (default 10)."""
    data = await body_object(request, required=False)
    timeout = data.get("timeout", 10.0)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 <= timeout <= MAX_DRAIN_SECONDS
    ):
        raise bad_field("timeout", f"must be a number of seconds >= 0 and <= {MAX_DRAIN_SECONDS:g}")
    engine = sandbox(request).delivery
    drained = await asyncio.to_thread(engine.drain, float(timeout))
    body = {"drained": drained, "pending": engine.pending(), "totals": dict(engine.attempts.totals)}
    return json_response(body, status_code=200 if drained else 408)


@router.get("/{webhook_id}/secret")
async def get_secret(request: Request, webhook_id: str) -> Response:
    """The consumer's signing secret, as Codat's Portal shows it."""
    consumer = sandbox(request).consumers.get(webhook_id)
    return json_response({"secret": consumer.secret.get_secret_value()})


@router.post("/{webhook_id}/secret")
async def set_secret(request: Request, webhook_id: str) -> Response:
    """Pin the consumer's signing secret (`{"secret": "whsec_..."}`), so a test knows it in advance."""
    data = await body_object(request)
    consumer = sandbox(request).consumers.set_secret(webhook_id, data.get("secret"))
    return json_response({"secret": consumer.secret.get_secret_value()})
