"""A tiny webhook receiver on loopback for the sandbox's deliveries: records each POST (headers, body, order)
and answers 204, or a status a test asked for (per webhook-id, for the first N attempts)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    #: webhook-id -> statuses to answer its next attempts with (then 204)
    fail: dict[str, list[int]] = field(default_factory=dict)
    #: answer every delivery with this status (None: 204)
    status: int | None = None
    #: seconds to wait before answering (a slow receiver)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            events = [r.event for r in self.received]
        return [e for e in events if event_type is None or e["eventType"] == event_type]

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every delivery verified with the standardwebhooks library (raises on a bad signature)."""
        with self.lock:
            received = list(self.received)
        return [Webhook(secret).verify(r.body, r.headers) for r in received]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.fail.clear()
            self.status = None
            self.delay = 0.0


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                receiver.received.append(Received(headers, body))
                planned = receiver.fail.get(headers.get("webhook-id", ""))
                status = planned.pop(0) if planned else (receiver.status or 204)
            if receiver.delay:
                time.sleep(receiver.delay)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/codat"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.clear()
    return receiver_server
