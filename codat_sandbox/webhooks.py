"""Webhook consumers as Codat keeps them (`POST/GET/DELETE /webhooks`), and how deliveries are signed.

Each consumer has its own signing secret (`whsec_` + base64), as Codat's Portal shows it; the sandbox
gives it out at `GET /_sandbox/webhooks/{id}/secret`. Consumers live in the sandbox's SQLite store, and a
copy in memory answers "who wants this event?" without a query per event.

Signing is Standard Webhooks (Svix), which Codat uses: `v1,` + base64 HMAC-SHA256 of
`{webhook-id}.{webhook-timestamp}.{body}`, keyed with the base64 after `whsec_`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from codat_sandbox.errors import ApiError
from codat_sandbox.store import Store

MAX_CONSUMERS = 50
MAX_COMPANY_TAGS = 10
MAX_TAG_LENGTH = 128
MAX_URL_LENGTH = 2048
#: the event types the sandbox sends; a consumer with no eventTypes gets all of them (as with Svix)
EVENT_TYPES = (
    "company.created",
    "company.deleted",
    "company.product.added",
    "company.product.removed",
    "connection.created",
    "connection.connected",
    "connection.disconnected",
    "connection.reconnected",
    "connection.deleted",
    "read.completed",
    "read.completed.initial",
)

CONSUMERS_TABLE = (
    "CREATE TABLE IF NOT EXISTS webhook_consumers (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
    "url TEXT NOT NULL, disabled INTEGER NOT NULL, event_types TEXT NOT NULL, company_tags TEXT NOT NULL, "
    "secret TEXT NOT NULL, shortcut INTEGER NOT NULL DEFAULT 0)"
)


def signing_key(secret: SecretStr) -> bytes:
    """The HMAC key of a secret: the base64 after `whsec_`, else the raw text."""
    raw = secret.get_secret_value()
    return base64.b64decode(raw.removeprefix("whsec_")) if raw.startswith("whsec_") else raw.encode()


def sign_with_key(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def sign(secret: SecretStr, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header Codat sends for `body`."""
    return sign_with_key(signing_key(secret), webhook_id, timestamp, body)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass(frozen=True)
class Consumer:
    id: str
    url: str
    disabled: bool
    event_types: tuple[str, ...]
    company_tags: tuple[str, ...]
    secret: SecretStr = field(repr=False)

    def doc(self) -> dict[str, Any]:
        """The consumer as Codat answers it (`WebhookConsumer`)."""
        return {
            "id": self.id,
            "url": self.url,
            "disabled": self.disabled,
            "eventTypes": list(self.event_types),
            "companyTags": list(self.company_tags),
        }

    def wants(self, event_type: str, tags: dict[str, str]) -> bool:
        if self.disabled or (self.event_types and event_type not in self.event_types):
            return False
        return not self.company_tags or any(f"{k}:{v}" in self.company_tags for k, v in tags.items())


def _bad(field_name: str, message: str) -> ApiError:
    return ApiError(
        400, f"{field_name}: {message}", errors=[(field_name, message)], validator="WebhookValidator"
    )


def _strings(
    body: dict[str, Any], name: str, *, max_items: int | None = None, max_length: int = 200
) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(name, "must be an array of non-empty strings")
    if max_items is not None and len(value) > max_items:
        raise _bad(name, f"at most {max_items} items are allowed")
    if any(len(v) > max_length for v in value):
        raise _bad(name, f"each item must be at most {max_length} characters")
    return list(dict.fromkeys(value))


def check_url(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith(("http://", "https://"))
        or len(value) > MAX_URL_LENGTH
    ):
        raise _bad("url", f"is required: an http(s) URL of at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise _bad("url", "must not contain whitespace or control characters")
    return value


def check_secret(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad("secret", "must be a non-empty string")
    if value.startswith("whsec_"):
        try:
            base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except ValueError:
            raise _bad("secret", "the part after whsec_ must be base64") from None
    return value


class ConsumerRegistry:
    """Webhook consumers in the store, mirrored in memory. Thread-safe."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        store.run(CONSUMERS_TABLE)
        self._load()

    def _load(self) -> None:
        rows = self.store.all("SELECT * FROM webhook_consumers ORDER BY seq")
        consumers = {
            row["id"]: Consumer(
                row["id"],
                row["url"],
                bool(row["disabled"]),
                tuple(json.loads(row["event_types"])),
                tuple(json.loads(row["company_tags"])),
                SecretStr(row["secret"]),
            )
            for row in rows
        }
        self._shortcut = next((row["id"] for row in rows if row["shortcut"]), None)
        self._consumers = consumers

    @property
    def active(self) -> bool:
        """Whether any consumer could receive an event (events are not even built otherwise)."""
        return any(not c.disabled for c in self._consumers.values())

    def all(self) -> list[Consumer]:
        return list(self._consumers.values())

    def get(self, consumer_id: str) -> Consumer:
        consumer = self._consumers.get(consumer_id) if isinstance(consumer_id, str) else None
        if consumer is None:
            raise ApiError(404, f"No webhook consumer was found with ID {consumer_id}")
        return consumer

    def matching(self, event_type: str, tags: dict[str, str]) -> list[Consumer]:
        return [c for c in self._consumers.values() if c.wants(event_type, tags)]

    def create(self, body: Any, *, secret: str | None = None, shortcut: bool = False) -> Consumer:
        """A consumer from Codat's create body `{url, disabled?, eventTypes[], companyTags?[]}`."""
        if not isinstance(body, dict):
            raise _bad("body", "must be a JSON object")
        url = check_url(body.get("url"))
        disabled = body.get("disabled")
        if disabled is not None and not isinstance(disabled, bool):
            raise _bad("disabled", "must be a boolean")
        event_types = _strings(body, "eventTypes")
        tags = _strings(body, "companyTags", max_items=MAX_COMPANY_TAGS, max_length=MAX_TAG_LENGTH)
        consumer = Consumer(
            str(uuid.uuid4()),
            url,
            bool(disabled),
            tuple(event_types),
            tuple(tags),
            SecretStr(secret or new_secret()),
        )
        with self._lock:
            if len(self._consumers) >= MAX_CONSUMERS:
                raise _bad("url", f"a client has at most {MAX_CONSUMERS} webhook consumers")
            self.store.run(
                "INSERT INTO webhook_consumers "
                "(id, url, disabled, event_types, company_tags, secret, shortcut) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    consumer.id,
                    url,
                    int(consumer.disabled),
                    json.dumps(event_types),
                    json.dumps(tags),
                    consumer.secret.get_secret_value(),
                    int(shortcut),
                ),
            )
            self._load()
        return consumer

    def delete(self, consumer_id: str) -> None:
        consumer = self.get(consumer_id)
        with self._lock:
            self.store.run("DELETE FROM webhook_consumers WHERE id = ?", (consumer.id,))
            self._load()

    def set_secret(self, consumer_id: str, secret: Any) -> Consumer:
        consumer = self.get(consumer_id)
        value = check_secret(secret)
        with self._lock:
            self.store.run("UPDATE webhook_consumers SET secret = ? WHERE id = ?", (value, consumer.id))
            self._load()
        return self.get(consumer.id)

    def replace_shortcut(self, url: str | None, secret: str | None) -> Consumer | None:
        """`POST /_sandbox/webhooks {url, secret}`: one consumer of every event type with that secret,
        replacing the one made the same way before; no url removes it."""
        with self._lock:
            self.store.run("DELETE FROM webhook_consumers WHERE shortcut = 1")
            self._load()
        if url is None:
            return None
        return self.create({"url": url}, secret=check_secret(secret), shortcut=True)

    def clear(self) -> None:
        with self._lock:
            self.store.run("DELETE FROM webhook_consumers")
            self._load()
