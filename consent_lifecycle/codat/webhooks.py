"""Codat webhooks: Standard Webhooks (Svix) signatures, checked by the maintained `standardwebhooks` library.

Headers `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,<base64>`, several separated by spaces);
Svix's names `svix-id`, `svix-timestamp`, `svix-signature` are accepted too (mapped onto the `webhook-*`
names, as Codat's own verification example does). The secret is the endpoint's `whsec_...` signing secret.

`verify` raises `WebhookRefused` with the HTTP status to answer: 401 for anything about the signature (a
missing, malformed or non-matching header, a body that is not UTF-8, a timestamp more than 5 minutes from
the library's clock or from our injected `now`), 400 for a signed body that is not a Codat envelope. The
secret is a SecretStr and never appears in a message.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from consent_lifecycle.clock import as_utc, parse_iso

TOLERANCE = timedelta(minutes=5)
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
#: what the library raises on a malformed header or body: all of it is a refused signature (401), never a 500
_REFUSED = (WebhookVerificationError, ValueError, binascii.Error, UnicodeError, TypeError, OverflowError)


class WebhookRefused(ValueError):
    """A delivery we refuse: `status` to answer (401 signature, 400 malformed envelope), the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Envelope:
    """A verified delivery: its `webhook-id` and the event's envelope fields."""

    webhook_id: str
    id: str
    event_type: str
    generated_at: datetime
    company_id: str | None
    payload: dict[str, Any]


def signature_headers(headers: dict[str, str]) -> dict[str, str]:
    """The three `webhook-*` headers of a delivery (lower-case names), taken from `svix-*` when absent."""
    lower = {k.lower(): v for k, v in headers.items()}
    return {name: lower.get(name) or lower.get("svix-" + name.removeprefix("webhook-")) or "" for name in HEADERS}


def verify(secret: SecretStr, headers: dict[str, str], body: bytes, now: datetime,
           tolerance: timedelta = TOLERANCE) -> Envelope:
    """The envelope of a delivery whose signature and timestamp check out; `WebhookRefused` otherwise."""
    signed = signature_headers(headers)
    missing = [name for name in HEADERS if not signed[name]]
    if missing:
        raise WebhookRefused(401, f"missing header {missing[0]} (or its svix- name)")
    try:
        Webhook(secret.get_secret_value()).verify(body, signed, json_parse=False)
    except _REFUSED as exc:
        reason = str(exc) if isinstance(exc, WebhookVerificationError) else "malformed signature headers or body"
        raise WebhookRefused(401, f"webhook signature refused: {reason}") from None
    sent = datetime.fromtimestamp(float(signed["webhook-timestamp"]), tz=as_utc(now).tzinfo)
    if abs(as_utc(now) - sent) > tolerance:
        raise WebhookRefused(401, f"webhook-timestamp is more than {tolerance} from now: refused as a replay")
    return parse_envelope(signed["webhook-id"], body)


def parse_envelope(webhook_id: str, body: bytes) -> Envelope:
    """The envelope `{id, eventType, generatedDate, payload}`; `WebhookRefused(400)` naming what is wrong."""
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookRefused(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookRefused(400, "body must be a JSON object")
    for field in ("id", "eventType", "generatedDate", "payload"):
        if field not in data:
            raise WebhookRefused(400, f"body has no {field!r}")
    if not isinstance(data["payload"], dict):
        raise WebhookRefused(400, "body's 'payload' must be an object")
    if not isinstance(data["eventType"], str) or not data["eventType"]:
        raise WebhookRefused(400, "body's 'eventType' must be a non-empty string")
    try:
        generated = parse_iso(str(data["generatedDate"]))
    except ValueError as exc:
        raise WebhookRefused(400, f"generatedDate: {exc}") from None
    payload = data["payload"]
    company = payload.get("referenceCompany")
    company_id = company.get("id") if isinstance(company, dict) else payload.get("id")
    return Envelope(
        webhook_id=webhook_id, id=str(data["id"]), event_type=data["eventType"], generated_at=generated,
        company_id=str(company_id) if company_id else None, payload=payload,
    )
