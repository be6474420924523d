"""A real HTTP webhook receiver on loopback: records each POST, verifies signatures, can fail on demand."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr

from consent_lifecycle.notify.channels import signature

WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"


@dataclass
class Hook:
    url: str
    received: list[dict] = field(default_factory=list)
    #: statuses to answer before succeeding (e.g. [500, 500]); 204 afterwards
    failures: list[int] = field(default_factory=list)
    #: called with each recorded request before it is answered (a test can crash the sender here)
    on_receive: Callable[[dict], None] | None = None


@pytest.fixture
def webhook() -> Iterator[Hook]:
    hook = Hook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            expected = signature(SecretStr(WEBHOOK_SECRET), self.headers["X-Consent-Timestamp"], body)
            hook.received.append({
                "key": self.headers.get("Idempotency-Key"), "body": json.loads(body),
                "signed": self.headers.get("X-Consent-Signature") == expected,
            })
            if hook.on_receive is not None:
                hook.on_receive(hook.received[-1])
            self.send_response(hook.failures.pop(0) if hook.failures else 204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/consent"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
