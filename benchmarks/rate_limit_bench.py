"""Paging under Codat's per-minute limit: does the client sustain the allowed rate, and lose no page?

Run from the repository root (about two minutes with the defaults; `make bench` runs it too):

    .venv/bin/python -m benchmarks.rate_limit_bench
    .venv/bin/python -m benchmarks.rate_limit_bench --per-minute 120 --windows 2.5 --output /tmp/bench

One `consent sandbox serve` process (clock frozen at the benchmark's `now`) with its per-minute limit set
LOW (`--per-minute`, default 60: a fixed 60-second window per client, as `codat_sandbox.limits`
counts it) and enough companies for `--windows` windows' worth of pages of `--page-size` companies. Then
the expiry scan's fetch path, with the real client (`consent_lifecycle.codat.CodatClient`, default retry
policy, concurrency from the CONSENT_ settings): one request for a one-company page to count the pages
(`tasks.codat.count_company_pages`), then batches of `--pages-per-task` pages, each batch one "task" with
its own client and event loop (`tasks.codat.fetch_company_pages`: `asyncio.gather` of the pages) on
`--threads` threads, as the flow's thread task runner runs them. Every HTTP response is recorded through
the clients' public `event_hooks` (when it was sent, its status, `X-Rate-Limit-Remaining`, `Retry-After`).

Reported:
- allowed rate: `--per-minute` / 60 requests per second;
- achieved rate: successful requests per second in steady state, i.e. the successes of every limit window
  but the last, over the time from the first window's start to the last window's start (a window starts
  with the request the sandbox answers with `X-Rate-Limit-Remaining = limit - 1`). An ideal client fills
  each window and starts the next the moment it opens, for a ratio of 1.0; a client that waits too long
  after a 429 (or idles inside a window) shows as `late_after_reset_s` and a lower ratio. Target >= 0.90;
- the same over the whole run (first request to last response), for reference: it depends on how full
  the last window is;
- 429s received (and the most any one page got: the client gives up after `RetryPolicy.max_attempts`
  attempts, so that figure against `max_attempts - 1` is the margin before a page is lost);
- pages expected vs pages received, and the distinct companies received (target: zero lost).

A table to stdout (progress to stderr) and everything to `<output>/rate-limit-<UTC timestamp>.json`.

`--throughput` measures instead the sandbox alone, so that it is known not to be what limits a benchmark:
one unthrottled sandbox of `--companies` (default 10000) companies, and for `--seconds` each a load of
back-to-back keep-alive requests on `--connections` connections from a minimal raw-socket HTTP/1.1 client
(no httpx, no parsing beyond the status line and Content-Length, so the load costs little CPU): a companies
page at the scan's page size (5000), then the per-company calls of the reconciliation (`syncSettings`,
`data/history` with the query of a first reconciliation: every company's first visit materializes its
history ("cold"), the second pass reads it ("warm")). Requests per second to stdout and to
`<output>/sandbox-throughput-<UTC timestamp>.json`:

    .venv/bin/python -m benchmarks.rate_limit_bench --throughput
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from benchmarks._processes import free_port
from benchmarks._services import SANDBOX_NOW, SizeSetup, sandbox, say
from consent_lifecycle.codat import CodatClient
from consent_lifecycle.codat.retry import RetryPolicy
from consent_lifecycle.settings import Settings

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
WINDOW_SECONDS = 60.0  # the sandbox's fixed window (codat_sandbox.limits.RateLimiter.WINDOW)
TARGET_RATIO = 0.90


@dataclass
class Exchange:
    """One HTTP request/response as the client saw it (times: time.monotonic())."""

    sent: float
    received: float
    status: int
    page: int | None
    page_size: int | None
    remaining: int | None
    retry_after: str | None


@dataclass
class Recorder:
    """Collects every response of every client (clients run on several threads)."""

    exchanges: list[Exchange] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, codat: CodatClient) -> None:
        """Hook every pooled httpx client of `codat` (`event_hooks` is httpx's public API)."""
        for http in codat._clients:
            hooks = http.event_hooks
            hooks["request"] = [*hooks.get("request", []), self._on_request]
            hooks["response"] = [*hooks.get("response", []), self._on_response]
            http.event_hooks = hooks

    async def _on_request(self, request: httpx.Request) -> None:
        request.extensions["bench_sent"] = time.monotonic()

    async def _on_response(self, response: httpx.Response) -> None:
        received = time.monotonic()
        request = response.request
        params = request.url.params
        remaining = response.headers.get("X-Rate-Limit-Remaining")
        exchange = Exchange(
            sent=request.extensions.get("bench_sent", received),
            received=received,
            status=response.status_code,
            page=int(params["page"]) if "page" in params else None,
            page_size=int(params["pageSize"]) if "pageSize" in params else None,
            remaining=int(remaining) if remaining is not None else None,
            retry_after=response.headers.get("Retry-After"),
        )
        with self._lock:
            self.exchanges.append(exchange)


# -- the fetch, as the expiry scan does it -------------------------------------------------------------------


def _client(settings: Settings, recorder: Recorder) -> CodatClient:
    codat = CodatClient.from_settings(settings)
    recorder.attach(codat)
    return codat


async def _count_pages(settings: Settings, recorder: Recorder, page_size: int) -> tuple[int, int]:
    """`tasks.codat.count_company_pages`: (pages at `page_size`, totalResults)."""
    async with _client(settings, recorder) as codat:
        first = await codat.get_companies_page(1, page_size=1)
    return -(-first.total_results // page_size), first.total_results


async def _fetch_batch(
    settings: Settings, recorder: Recorder, pages: list[int], page_size: int
) -> list[tuple[int, list[str] | str]]:
    """`tasks.codat.fetch_company_pages`, but a failed page is recorded (its error) instead of failing the
    batch, so that lost pages can be counted."""
    async with _client(settings, recorder) as codat:
        fetched = await asyncio.gather(
            *(codat.get_companies_page(n, page_size=page_size) for n in pages), return_exceptions=True
        )
    return [
        (
            n,
            f"{type(page).__name__}: {page}"
            if isinstance(page, BaseException)
            else [c.id for c in page.results],
        )
        for n, page in zip(pages, fetched, strict=True)
    ]


def fetch_all(
    settings: Settings, recorder: Recorder, page_size: int, pages_per_task: int, threads: int
) -> dict[str, Any]:
    started = time.monotonic()
    page_count, total = asyncio.run(_count_pages(settings, recorder, page_size))
    pages = list(range(1, page_count + 1))
    batches = [pages[i : i + pages_per_task] for i in range(0, len(pages), pages_per_task)]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="task") as pool:
        results = list(
            pool.map(lambda batch: asyncio.run(_fetch_batch(settings, recorder, batch, page_size)), batches)
        )
    finished = time.monotonic()
    received = {n: ids for batch in results for n, ids in batch if isinstance(ids, list)}
    lost = {n: error for batch in results for n, error in batch if isinstance(error, str)}
    companies = {company for ids in received.values() for company in ids}
    return {
        "started": started,
        "finished": finished,
        "total_results": total,
        "pages_expected": page_count,
        "pages_received": len(received),
        "pages_lost": len(lost),
        "lost_errors": dict(sorted(lost.items())[:20]),
        "companies_received": len(companies),
    }


# -- the figures -----------------------------------------------------------------------------------------------


def analyse(exchanges: Sequence[Exchange], per_minute: int, run: dict[str, Any]) -> dict[str, Any]:
    ordered = sorted(exchanges, key=lambda e: e.sent)
    ok = [e for e in ordered if 200 <= e.status < 300]
    limited = [e for e in ordered if e.status == 429]
    starts = [e.sent for e in ok if e.remaining == per_minute - 1]  # the first request of each window
    windows = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else math.inf
        in_window = [e for e in ok if start <= e.sent < end]
        windows.append(
            {
                "start_s": round(start - run["started"], 3),
                "successes": len(in_window),
                "filled_after_s": round(max(e.received for e in in_window) - start, 3) if in_window else None,
                "late_after_reset_s": (round(end - (start + WINDOW_SECONDS), 3) if end != math.inf else None),
            }
        )
    allowed = per_minute / WINDOW_SECONDS
    steady = None
    if len(starts) >= 2:
        span = starts[-1] - starts[0]
        before_last = sum(w["successes"] for w in windows[:-1])
        steady = before_last / span
    wall = max(e.received for e in ordered) - ordered[0].sent
    by_page = Counter(e.page for e in limited if e.page_size != 1)
    statuses = Counter(e.status for e in ordered)
    return {
        "allowed_per_second": allowed,
        "achieved_per_second": steady,
        "ratio": steady / allowed if steady is not None else None,
        "target_ratio": TARGET_RATIO,
        "whole_run_per_second": len(ok) / wall,
        "whole_run_ratio": len(ok) / wall / allowed,
        "wall_seconds": wall,
        "requests": len(ordered),
        "successes": len(ok),
        "responses_429": len(limited),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "most_429s_one_page": max(by_page.values(), default=0),
        "pages_with_429": len(by_page),
        "client_max_attempts": RetryPolicy().max_attempts,
        "windows": windows,
        "late_after_reset_s_mean": (
            sum(w["late_after_reset_s"] for w in windows[:-1]) / (len(windows) - 1)
            if len(windows) > 1
            else None
        ),
    }


# -- the sandbox alone -----------------------------------------------------------------------------------------

THROUGHPUT_PAGE_SIZE = 5000  # the expiry scan's page size


async def _load(port: int, api_key: str, paths: Sequence[str], connections: int, seconds: float) -> dict:
    """Requests back to back on `connections` keep-alive connections for `seconds`, cycling through `paths`
    (each path once before any repeats, when there are enough of them)."""
    auth = base64.b64encode(api_key.encode()).decode()
    statuses: Counter[int] = Counter()
    cursor = iter(range(10**12))
    deadline = time.monotonic() + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                path = paths[next(cursor) % len(paths)]
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Basic {auth}\r\n"
                    "Accept: application/json\r\n\r\n".encode()
                )
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                statuses[int(head.split(b" ", 2)[1])] += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(connection() for _ in range(connections)))
    wall = time.monotonic() - started
    total = sum(statuses.values())
    return {
        "requests": total,
        "seconds": round(wall, 2),
        "requests_per_second": round(total / wall, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    api_key = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="consent-sandbox-bench-") as workdir:
        port = free_port()
        setup = SizeSetup(args.companies, args.seed, f"http://127.0.0.1:{port}", api_key, Path(workdir))
        with sandbox(setup, port) as admin:
            token = base64.b64encode(api_key.encode()).decode()
            with httpx.Client(base_url=setup.base_url, headers={"Authorization": f"Basic {token}"}) as http:
                ids = [
                    company["id"]
                    for page in range(1, -(-args.companies // THROUGHPUT_PAGE_SIZE) + 1)
                    for company in http.get(
                        "/companies", params={"page": page, "pageSize": THROUGHPUT_PAGE_SIZE}, timeout=120
                    ).json()["results"]
                ]
            now = quote(admin.now(), safe="")
            pages = [
                f"/companies?page={n}&pageSize={THROUGHPUT_PAGE_SIZE}"
                for n in range(1, -(-args.companies // THROUGHPUT_PAGE_SIZE) + 1)
            ]
            loads = {
                f"GET /companies pageSize={THROUGHPUT_PAGE_SIZE}": (pages, 2),
                "GET /companies/{id}/syncSettings": ([f"/companies/{i}/syncSettings" for i in ids], 10),
            }
            history = [
                f"/companies/{i}/data/history?page=1&pageSize=5000&query=requested%3C{now}" for i in ids
            ]
            results = {}
            for name, (paths, connections) in loads.items():
                say(f"  {name}: {connections} connections, {args.seconds:.0f} s")
                results[name] = asyncio.run(_load(port, api_key, paths, connections, args.seconds))
            for name in (
                "GET /companies/{id}/data/history (cold)",
                "GET /companies/{id}/data/history (warm)",
            ):
                say(f"  {name}: 10 connections, {args.seconds:.0f} s")
                results[name] = asyncio.run(_load(port, api_key, history, 10, args.seconds))
                history = history[: results[name]["requests"]]  # warm: the companies the cold pass visited
    return results


# -- the run ---------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rate_limit_bench",
        description="Page every company through the real client against a sandbox with a low per-minute limit.",
    )
    parser.add_argument(
        "--per-minute", type=int, default=60, help="the sandbox's per-minute limit (default 60)"
    )
    parser.add_argument(
        "--windows",
        type=float,
        default=2.5,
        help="how many limit windows' worth of pages to fetch (default 2.5: about 2 minutes at any limit)",
    )
    parser.add_argument("--page-size", type=int, default=20, help="companies per page (default 20)")
    parser.add_argument(
        "--pages-per-task", type=int, default=4, help="pages per fetch task (the scan's default, 4)"
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="tasks side by side (the thread task runner's default, 4)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR")
    parser.add_argument(
        "--throughput", action="store_true", help="measure the unthrottled sandbox alone instead (requests/s)"
    )
    parser.add_argument("--companies", type=int, default=10000, help="--throughput: sandbox size (10000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="--throughput: seconds per endpoint (10)")
    args = parser.parse_args(argv)
    if args.per_minute < 2 or args.windows < 1.5 or args.page_size < 1:
        parser.error("need --per-minute >= 2, --windows >= 1.5 (two windows to measure), --page-size >= 1")
    args.output.mkdir(parents=True, exist_ok=True)
    return args


def render(figures: dict[str, Any], run: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    ratio_ok = figures["ratio"] is not None and figures["ratio"] >= TARGET_RATIO
    rows = [
        ("allowed rate (req/s)", figures["allowed_per_second"]),
        ("achieved rate, steady (req/s)", figures["achieved_per_second"]),
        ("ratio (target >= 0.90)", f"{fmt(figures['ratio'])} {'ok' if ratio_ok else 'SHORT'}"),
        (
            "whole run: rate (req/s), ratio",
            f"{fmt(figures['whole_run_per_second'])}, {fmt(figures['whole_run_ratio'])}",
        ),
        ("wall seconds", figures["wall_seconds"]),
        ("requests / successes", f"{figures['requests']} / {figures['successes']}"),
        ("429s received", figures["responses_429"]),
        (
            "most 429s for one page (gives up at)",
            f"{figures['most_429s_one_page']} ({figures['client_max_attempts'] - 1})",
        ),
        ("mean lateness after a window reset (s)", figures["late_after_reset_s_mean"]),
        ("pages expected / received", f"{run['pages_expected']} / {run['pages_received']}"),
        ("pages lost (target 0)", run["pages_lost"]),
        ("companies expected / received", f"{run['total_results']} / {run['companies_received']}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {fmt(value)}" for name, value in rows]
    lines.append("")
    lines.append("window  start_s  successes  filled_after_s  late_after_reset_s")
    for i, w in enumerate(figures["windows"], 1):
        lines.append(
            f"{i:>6}  {w['start_s']:>7}  {w['successes']:>9}  {fmt(w['filled_after_s']):>14}  "
            f"{fmt(w['late_after_reset_s']):>18}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    if args.throughput:
        say(f"sandbox throughput: {args.companies} companies, unthrottled")
        results = throughput(args)
        width = max(len(name) for name in results)
        for name, result in results.items():
            print(f"{name.ljust(width)}  {result['requests_per_second']:>8.1f} req/s  ({result['statuses']})")
        path = args.output / f"sandbox-throughput-{started_at:%Y%m%dT%H%M%SZ}.json"
        document = {
            "started_at": started_at.isoformat().replace("+00:00", "Z"),
            "command": " ".join(sys.orig_argv),
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "results": results,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        say(f"results: {path}")
        return 0
    pages = math.ceil(args.per_minute * args.windows)
    companies = pages * args.page_size
    api_key = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="consent-rate-bench-") as workdir:
        port = free_port()
        setup = SizeSetup(
            companies=companies,
            seed=args.seed,
            base_url=f"http://127.0.0.1:{port}",
            api_key=api_key,
            directory=Path(workdir),
        )
        say(
            f"rate-limit bench: {companies} companies = {pages} pages of {args.page_size}, "
            f"limit {args.per_minute}/min (~{args.windows} windows)"
        )
        with sandbox(setup, port, rate_limit_per_minute=args.per_minute) as admin:
            admin.clear_requests()
            settings = Settings(codat_base_url=setup.base_url, codat_api_key=api_key)
            recorder = Recorder()
            run = fetch_all(settings, recorder, args.page_size, args.pages_per_task, args.threads)
            sandbox_counts = admin.requests()
    figures = analyse(recorder.exchanges, args.per_minute, run)
    print(render(figures, run))
    document = {
        "started_at": started_at.isoformat().replace("+00:00", "Z"),
        "command": " ".join(sys.orig_argv),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "sandbox_now": SANDBOX_NOW,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "client": {"retry": asdict(RetryPolicy()) | {"statuses": sorted(RetryPolicy().statuses)}},
        "codat_max_concurrency": settings.codat_max_concurrency,
        "figures": figures,
        "run": {k: v for k, v in run.items() if k not in ("started", "finished")},
        "sandbox_requests": sandbox_counts,
    }
    path = args.output / f"rate-limit-{started_at:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    say(f"results: {path}")
    return 0  # figures, not a test: the table says whether the targets were met


if __name__ == "__main__":
    sys.exit(main())
