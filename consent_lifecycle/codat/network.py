"""A cheaper "is this idle connection still usable?" check for httpx's connection pools.

Before every request on a kept-alive connection, httpcore asks its network stream whether the socket is
readable (the server closed it, or sent something unasked). Through the default anyio backend that question
rebuilds anyio's table of socket attributes, calling `getpeername()` and a dozen lambdas, and was about a
sixth of the flow's CPU at hundreds of requests a second. `install(client)` wraps each of the client's
httpcore pools' network backend so that each stream remembers its socket once and polls it directly; every
other call (connect, TLS, reads and writes with their timeouts) goes to the wrapped backend unchanged.
"""

from __future__ import annotations

import select
import socket
import sys
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


def install(client: httpx.AsyncClient) -> int:
    """Wrap the network backend of each httpcore pool behind `client` (its default transport and any proxy
    mounts); returns how many were wrapped (0 for a transport given by the caller, such as a mock)."""
    wrapped = 0
    for pool in _pools(client):
        if not isinstance(pool._network_backend, SocketPollingBackend):
            pool._network_backend = SocketPollingBackend(pool._network_backend)
        wrapped += 1
    return wrapped


def _pools(client: httpx.AsyncClient) -> Iterable[Any]:
    # httpx<0.29 keeps its transports in `_transport` and `_mounts`, and each httpcore 1.x pool its backend
    # in `_network_backend`: private, so tests/test_codat_client.py checks that the wrap took effect
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if hasattr(pool, "_network_backend"):
            yield pool


def is_readable(sock: socket.socket | None) -> bool:
    """True when a read would not block: data or EOF waiting, or no usable socket (so: do not reuse it)."""
    if sock is None or sock.fileno() == -1:
        return True
    if sys.platform == "win32" or not hasattr(select, "poll"):
        ready, _, _ = select.select([sock], [], [], 0)
        return bool(ready)
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return bool(poll.poll(0))


class SocketPollingBackend(httpcore.AsyncNetworkBackend):
    """`inner`'s connections, each answering "is_readable" from its own socket."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return SocketPollingStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)
        return SocketPollingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class SocketPollingStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self.inner = inner
        self.socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return SocketPollingStream(await self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return is_readable(self.socket)
        return self.inner.get_extra_info(info)
