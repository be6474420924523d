"""Where notifications go: a signed webhook (production) or a JSON-lines file (local runs, the demo).

A channel's `send` either returns (delivered) or raises `DeliveryError` (not delivered this time, or the
outcome is unknown). Any other exception is a bug: the outbox leaves the row claimed, and it is sent again
once its lease runs out, with the same `Idempotency-Key`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from consent_lifecycle.clock import as_utc, utcnow

log = logging.getLogger(__name__)

#: statuses worth another try: the receiver was overloaded or failed
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class DeliveryError(Exception):
    """A notification could not be delivered (this time). Its message never holds a secret."""


class Channel(Protocol):
    name: str

    def send(self, notification: dict[str, Any]) -> None: ...


def encode(notification: dict[str, Any]) -> bytes:
    """The wire form of a notification: compact JSON, sorted keys (what the signature covers)."""
    return json.dumps(notification, sort_keys=True, separators=(",", ":"), default=str).encode()


def signature(secret: SecretStr, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `{timestamp}.{body}`: the receiver recomputes it with the secret."""
    mac = hmac.new(secret.get_secret_value().encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: SecretStr, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does: does `header` (X-Consent-Signature) match? Constant-time comparison."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def safe_url(url: str) -> str:
    """`url` without credentials, query or fragment: fit for logs and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class WebhookChannel:
    """POST each notification as JSON with `Idempotency-Key` (its outbox key), a timestamp and a signature.

    Retries 5xx, 429 and connection failures `retries` times with exponential backoff (`backoff` seconds,
    doubled each time, at most `max_backoff`; a 429's `Retry-After` is honoured up to that bound). Every
    try carries the same `Idempotency-Key`, so the receiver can tell a resend from a new message.
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: SecretStr,
        timeout: float = 10.0,
        retries: int = 3,
        *,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(secret, SecretStr):
            raise TypeError("the webhook secret must be a pydantic SecretStr")
        self.url = url
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.__secret = secret
        self._clock, self._sleep = clock, sleep
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    def __repr__(self) -> str:
        return f"WebhookChannel(url={safe_url(self.url)!r}, retries={self.retries})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def headers(self, key: str, body: bytes) -> dict[str, str]:
        timestamp = str(int(as_utc(self._clock()).timestamp()))
        return {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "X-Consent-Timestamp": timestamp,
            "X-Consent-Signature": signature(self.__secret, timestamp, body),
        }

    def send(self, notification: dict[str, Any]) -> None:
        key = str(notification["key"])
        body = encode(notification)
        where = safe_url(self.url)
        last = "not sent"
        for attempt in range(self.retries + 1):
            wait = min(self.backoff * 2**attempt, self.max_backoff)
            try:
                response = self._client.post(self.url, content=body, headers=self.headers(key, body))
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__} posting to {where}"
            else:
                if response.is_success:
                    log.info("notification %s delivered to %s (%d)", key, where, response.status_code)
                    return
                last = f"{where} answered {response.status_code}"
                if response.status_code not in RETRYABLE_STATUS:
                    break  # the receiver refuses it: retrying now will not help
                wait = min(max(wait, _retry_after(response)), self.max_backoff)
            if attempt < self.retries:
                log.warning("notification %s: %s; retry %d/%d in %.2fs", key, last, attempt + 1, self.retries, wait)
                self._sleep(wait)
        log.warning("notification %s not delivered: %s", key, last)
        raise DeliveryError(last)


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("Retry-After")
    if not value:
        return 0.0
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max((parsedate_to_datetime(value) - utcnow()).total_seconds(), 0.0)
        except (TypeError, ValueError):
            return 0.0


class FileChannel:
    """Append one JSON line per notification: the default where no webhook is configured.

    The file is opened on the first send and kept open until `close`; each line is flushed to the file
    before `send` returns, as closing it after each line did."""

    name = "file"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = None

    def __repr__(self) -> str:
        return f"FileChannel(path={str(self.path)!r})"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, notification: dict[str, Any]) -> None:
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab")
            self._file.write(encode(notification) + b"\n")
            self._file.flush()
        except OSError as exc:
            self._drop_file()
            raise DeliveryError(f"cannot append to {self.path}: {exc.strerror or type(exc).__name__}") from None

    def _drop_file(self) -> None:
        """After a failed write: let go of the file (the next send opens it again)."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass


def channel_from_settings(settings: Any) -> WebhookChannel | FileChannel:
    """The webhook when CONSENT_NOTIFY_WEBHOOK_URL is set (it must be signed), else the notifications file."""
    if settings.notify_webhook_url:
        if settings.notify_webhook_secret is None:
            raise ValueError("CONSENT_NOTIFY_WEBHOOK_SECRET is not set: webhook notifications must be signed")
        return WebhookChannel(settings.notify_webhook_url, settings.notify_webhook_secret)
    return FileChannel(Path(settings.notify_file))
