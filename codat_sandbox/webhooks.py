"""The sandbox's outgoing Codat webhooks: `connection.disconnected` / `connection.reconnected` when the admin
routes change a connection's status, signed as Codat signs them
(Standard Webhooks: `v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`).

Off until `POST /_sandbox/webhooks {"url": ..., "secret": ...}`. `generatedDate` is the sandbox clock's time;
`webhook-timestamp` is the real time of delivery (what a receiver checks against its own clock).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

log = logging.getLogger(__name__)


def sign(secret: SecretStr, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header Codat sends: the key is the base64 after `whsec_` (else the raw text)."""
    raw = secret.get_secret_value()
    key = base64.b64decode(raw.removeprefix("whsec_")) if raw.startswith("whsec_") else raw.encode()
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


@dataclass
class WebhookTarget:
    url: str
    secret: SecretStr


class WebhookEmitter:
    def __init__(self) -> None:
        self.target: WebhookTarget | None = None
        self.delivered: list[dict[str, Any]] = []

    def configure(self, url: str | None, secret: str | None) -> None:
        self.target = WebhookTarget(url, SecretStr(secret)) if url and secret else None

    def emit(self, event_type: str, company: dict[str, Any], connection: dict[str, Any], generated: str) -> None:
        """Deliver one event (once: a receiver that fails does not get retries from the sandbox)."""
        if self.target is None:
            return
        company_ref = {k: company.get(k) for k in ("id", "name", "description", "tags")}
        envelope = {"id": str(uuid.uuid4()), "eventType": event_type, "generatedDate": generated,
                    "payload": {"referenceCompany": company_ref, "connection": connection}}
        body = json.dumps(envelope).encode()
        webhook_id, stamp = envelope["id"], int(time.time())
        headers = {"content-type": "application/json", "webhook-id": webhook_id,
                   "webhook-timestamp": str(stamp), "webhook-signature": sign(self.target.secret, webhook_id, stamp, body)}
        try:
            status = httpx.post(self.target.url, content=body, headers=headers, timeout=10).status_code
        except httpx.HTTPError as exc:
            log.warning("sandbox webhook %s to %s failed: %s", event_type, self.target.url, type(exc).__name__)
            status = None
        self.delivered.append({"id": webhook_id, "event_type": event_type, "status": status})
