"""Codat webhooks: Svix-style signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64>`).

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 with the endpoint's signing
secret (`whsec_` + base64 key, from the Codat Portal). A delivery is refused when a header is missing, the
timestamp is more than `tolerance` away from `now` (a replay of an old capture), or no `v1` signature matches.
The secret is a SecretStr and never appears in an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from consent_lifecycle.clock import as_utc, parse_iso

TOLERANCE = timedelta(minutes=5)
#: the events that change what the expiry scan knows about a connection
CONNECTION_EVENTS = frozenset({
    "connection.created", "connection.connected", "connection.disconnected", "connection.reconnected",
    "connection.deleted",
})


class WebhookError(ValueError):
    """A delivery we refuse: the message says why (never the secret)."""


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    event_type: str
    generated_at: datetime
    company_id: str | None
    connection_id: str | None
    connection_status: str | None
    payload: dict[str, Any]


def _key(secret: SecretStr) -> bytes:
    raw = secret.get_secret_value()
    return base64.b64decode(raw.removeprefix("whsec_")) if raw.startswith("whsec_") else raw.encode()


def sign(secret: SecretStr, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for a delivery."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), content, hashlib.sha256).digest()).decode()


def verify(secret: SecretStr, headers: dict[str, str], body: bytes, now: datetime,
           tolerance: timedelta = TOLERANCE) -> WebhookEvent:
    """The event of a delivery whose signature and timestamp check out; WebhookError otherwise."""
    lower = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in ("webhook-id", "webhook-timestamp", "webhook-signature") if not lower.get(h)]
    if missing:
        raise WebhookError(f"missing header {missing[0]}")
    webhook_id, stamp = lower["webhook-id"], lower["webhook-timestamp"]
    try:
        sent = datetime.fromtimestamp(int(stamp), tz=as_utc(now).tzinfo)
    except (ValueError, OverflowError):
        raise WebhookError(f"webhook-timestamp {stamp!r} is not a Unix time") from None
    if abs(as_utc(now) - sent) > tolerance:
        raise WebhookError(f"webhook-timestamp {stamp} is more than {tolerance} from now: refused as a replay")
    expected = sign(secret, webhook_id, int(stamp), body)
    offered = lower["webhook-signature"].split()
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise WebhookError("webhook-signature does not match: not from Codat, or the signing secret is wrong")
    return parse_event(body)


def parse_event(body: bytes) -> WebhookEvent:
    """The envelope `{id, eventType, generatedDate, payload}`; WebhookError naming what is wrong."""
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookError("body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookError("body must be a JSON object")
    for field in ("id", "eventType", "generatedDate", "payload"):
        if field not in data:
            raise WebhookError(f"body has no {field!r}")
    payload = data["payload"] if isinstance(data["payload"], dict) else {}
    company = payload.get("referenceCompany") or {}
    connection = payload.get("connection") or {}
    try:
        generated = parse_iso(str(data["generatedDate"]))
    except ValueError as exc:
        raise WebhookError(f"generatedDate: {exc}") from None
    return WebhookEvent(
        id=str(data["id"]), event_type=str(data["eventType"]), generated_at=generated,
        company_id=company.get("id") or payload.get("id"), connection_id=connection.get("id"),
        connection_status=connection.get("status"), payload=payload,
    )
