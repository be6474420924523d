"""A minimal HTTP/1.1 keep-alive POST client for webhook delivery.

Why not httpx: a delivery worker spends most of its time in the client, and httpx costs ~0.5 ms of Python
per request; this one writes the request in one `sendall` and parses only the status line, the framing
headers and the body's length, so one process can push thousands of deliveries a second. It speaks plain
`http://` only (the sandbox delivers to receivers on loopback); the caller falls back to httpx otherwise.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024


class HttpError(Exception):
    """The connection failed, timed out, or the answer was not HTTP/1.x."""


class KeepAliveClient:
    """One persistent connection to one `http://host:port`; reconnects when the server closes it.

    Not thread-safe: each delivery worker owns its own clients."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not an http:// URL: {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buffer = None, b""

    def post(self, url: str, headers: dict[str, str], body: bytes) -> int:
        """POST `body` to `url` (on this client's host) and return the response status.

        A request on a reused connection that the server had closed meanwhile is sent once more on a new
        one (webhooks are at-least-once: a receiver may see it twice, as it may from Codat)."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1", f"Host: {self.host_header}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        reused = self._sock is not None
        try:
            return self._exchange(request)
        except (OSError, HttpError):
            self.close()
            if not reused:
                raise
        try:
            return self._exchange(request)
        except OSError as exc:
            self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from None
        except HttpError:
            self.close()
            raise

    def _exchange(self, request: bytes) -> int:
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._buffer = sock, b""
        self._sock.sendall(request)
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise HttpError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(rest[:3])
        fields: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        keep_alive = fields.get("connection", "").lower() != "close" and version != "HTTP/1.0"
        if "chunked" in fields.get("transfer-encoding", "").lower():
            self._read_chunked()
        elif "content-length" in fields:
            self._read_exactly(int(fields["content-length"]))
        else:
            self._read_to_close()
            keep_alive = False
        if not keep_alive:
            self.close()
        return status

    def _recv(self) -> bytes:
        assert self._sock is not None
        data = self._sock.recv(65536)
        if not data:
            raise HttpError("the server closed the connection")
        return data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise HttpError("response headers too long")
            self._buffer += self._recv()
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._recv()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read_chunked(self) -> None:
        while True:
            size = int(self._read_until(b"\r\n").split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self._read_until(b"\r\n")  # trailers (none expected) end with an empty line
                return
            self._read_exactly(size + 2)

    def _read_to_close(self) -> None:
        assert self._sock is not None
        while self._sock.recv(65536):
            pass
