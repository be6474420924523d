"""Run a sandbox: `running_sandbox(config)` in a background thread (tests), `serve(...)` blocking (CLI)."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI

from codat_sandbox.app import create_app
from codat_sandbox.config import SandboxConfig

STARTUP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class SandboxHandle:
    """A running sandbox: where it is and how to call it. The key stays out of the repr."""

    base_url: str
    api_key: str = field(repr=False)
    config: SandboxConfig
    app: FastAPI = field(repr=False)

    @property
    def auth_header(self) -> dict[str, str]:
        """`{"Authorization": "Basic base64(api_key)"}`."""
        return {"Authorization": "Basic " + base64.b64encode(self.api_key.encode()).decode()}


def _server(app: FastAPI, log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=log_level == "info",
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=5,
    )
    return uvicorn.Server(config)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket. TCP_NODELAY is set here (accepted sockets inherit it): without it a
    response written as headers then body waits ~40 ms for the client's delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


@contextmanager
def running_sandbox(config: SandboxConfig) -> Iterator[SandboxHandle]:
    """Serve a sandbox on 127.0.0.1 (a free port, bound before the server starts) until the block ends."""
    app = create_app(config)
    try:
        with serving(app) as base_url:
            yield SandboxHandle(base_url=base_url, api_key=config.api_key, config=config, app=app)
    finally:
        app.state.sandbox.close()


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve any ASGI `app` on 127.0.0.1 in a thread (a free port, bound first) until the block ends;
    yields its base URL."""
    sock = _listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"asgi-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server stopped during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {STARTUP_TIMEOUT_SECONDS} s")
            time.sleep(0.002)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve(config: SandboxConfig, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve a sandbox in the foreground on `host:port` until interrupted (Ctrl-C)."""
    app = create_app(config)
    sock = _listening_socket(host, port)
    try:
        _server(app, log_level="info").run(sockets=[sock])
    finally:
        sock.close()
        app.state.sandbox.close()
