"""The sandbox's webhook delivery rate, and a day of its sync scheduler at scale.

Run from the repository root:

    .venv/bin/python -m benchmarks.sandbox_events_bench                      # both, 100k companies
    .venv/bin/python -m benchmarks.sandbox_events_bench --companies 20000 --deliveries 10000

- delivery: `--deliveries` read.completed events published to one consumer, a receiver in another
  process (a minimal asyncio HTTP/1.1 server answering 204); the time until all are delivered.
- scheduler: a sandbox of `--companies` (scheduler on) advanced one day, without a consumer and then
  (a fresh sandbox) with one at that receiver: the advance's time, pulls and events, and how long the
  deliveries took after it returned.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def receive(port: int) -> None:
    """Answer every POST on 127.0.0.1:`port` with 204, keeping connections alive."""

    class Receiver(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                length = 0
                for line in self.buffer[:end].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length :]
                self.transport.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")  # type: ignore[attr-defined]

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sandbox(companies: int):  # -> codat_sandbox.state.Sandbox (imported late: only this process needs it)
    from codat_sandbox.config import SandboxConfig
    from codat_sandbox.state import Sandbox

    return Sandbox(SandboxConfig(api_key="bench", companies=companies, now=NOW, sync_scheduler=True))


def bench_delivery(url: str, deliveries: int) -> None:
    sb = sandbox(10)
    sb.consumers.create({"url": url})
    entry = {"connectionId": "c", "dataType": "invoices", "recordsModified": True, "status": "Complete"}
    payload = {"referenceCompany": {"id": "x", "name": "n", "tags": {}}, "dataTypes": [entry] * 8}
    start = time.perf_counter()
    for _ in range(deliveries):
        sb.world.events.publish("read.completed", "2026-11-01T12:00:00Z", payload, {})
    assert sb.delivery.drain(600)
    took = time.perf_counter() - start
    print(f"delivery: {deliveries} in {took:.2f} s, {deliveries / took:,.0f}/s {sb.delivery.attempts.totals}")
    sb.close()


def bench_scheduler(url: str | None, companies: int) -> None:
    sb = sandbox(companies)
    if url:
        sb.consumers.create({"url": url})
    before = sb.world.now_text()
    start = time.perf_counter()
    sb.clock.advance(86_400)
    totals = sb.clock_moved(before)
    took = time.perf_counter() - start
    linked = sb.world.store.scalar("SELECT COUNT(*) FROM connections WHERE status = 'Linked'")
    line = (
        f"scheduler, {companies} companies ({linked} Linked connections), {'a' if url else 'no'} consumer: "
    )
    line += f"one day in {took:.1f} s, {totals['pulls']:,} pulls, {totals['events']:,} events"
    if url:
        assert sb.delivery.drain(600)
        line += f", all delivered {time.perf_counter() - start - took:.1f} s after"
    print(line)
    sb.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=30_000)
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        receive(args.receiver)
        return
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sandbox_events_bench", "--receiver", str(port)]
    )
    try:
        time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/webhooks/codat"
        bench_delivery(url, args.deliveries)
        bench_scheduler(None, args.companies)
        bench_scheduler(url, args.companies)
    finally:
        process.kill()


if __name__ == "__main__":
    main()
