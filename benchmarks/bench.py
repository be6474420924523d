"""Benchmark the flows at chosen sizes against a sandbox in its own process and a real Prefect server.

Run from the repository root:

    .venv/bin/python -m benchmarks.bench --companies 1000 10000
    .venv/bin/python -m benchmarks.bench --companies 5000 --seed 11 --output /tmp/bench

One `prefect server start` (temporary PREFECT_HOME, analytics off) serves the whole benchmark. For each
size and flow (see `benchmarks.registry`): a `consent sandbox serve` process with that many companies, its
clock frozen and its rate limits out of the way; a fresh SQLite consent database, migrated; the flow run
twice in a child process (`benchmarks._flow_runner`) at the sandbox's `now` (the second run should queue
no notification); then raw httpx paging of the same pages (`benchmarks._raw_paging`). Measured: the
flow's wall seconds around the call, the flow process's peak RSS, the Prefect task runs of the flow run
(from the server's API), the requests the sandbox counted, and scan wall / raw paging wall.

A plain table goes to stdout (progress to stderr) and the same, with every detail, to
`<output>/bench-<UTC timestamp>.json`. Every child process is stopped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks._processes import (
    BenchError,
    background,
    free_port,
    run_json,
    run_quietly,
    wait_until_ready,
)
from benchmarks.registry import FLOWS, FlowSpec

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
SANDBOX_NOW = "2026-11-01T12:00:00Z"  # the sandbox clock is frozen here, so a seed gives the same world
MAX_COMPANIES = 1_000_000  # the sandbox's own bound
UNTHROTTLED_PER_MINUTE = 100_000_000
UNTHROTTLED_PER_COMPANY = 10_000
PREFECT_START_TIMEOUT = 180.0
FLOW_TIMEOUT = 3600.0
TASK_RUNS_SETTLE_TIMEOUT = 60.0
TASK_RUN_DETAILS_LIMIT = 200  # the server's default page limit
TERMINAL_STATES = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
BIN = Path(sys.executable).parent
# Inherited CONSENT_ variables the benchmark sets itself (others, e.g. CONSENT_CODAT_MAX_CONCURRENCY, pass).
OWNED_CONSENT_VARIABLES = (
    "CONSENT_DATABASE_URL",
    "CONSENT_CODAT_BASE_URL",
    "CONSENT_CODAT_API_KEY",
    "CONSENT_NOTIFY_WEBHOOK_URL",
    "CONSENT_NOTIFY_WEBHOOK_SECRET",
    "CONSENT_NOTIFY_FILE",
)


def say(message: str) -> None:
    """Progress, on stderr (stdout carries only the table)."""
    print(message, file=sys.stderr, flush=True)


# -- arguments -----------------------------------------------------------------------------------


def company_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_COMPANIES:
        raise argparse.ArgumentTypeError(f"{value} is not in the range 1..{MAX_COMPANIES}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Benchmark the flows against a sandbox process and a real Prefect server.",
    )
    parser.add_argument(
        "--companies",
        type=company_count,
        nargs="+",
        required=True,
        metavar="N",
        help="sandbox sizes to measure, e.g. --companies 1000 10000",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the sandbox world (default: 7)")
    parser.add_argument(
        "--flows",
        nargs="+",
        choices=sorted(FLOWS),
        default=sorted(FLOWS),
        metavar="FLOW",
        help=f"flows to run (default: all of {', '.join(sorted(FLOWS))})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help="directory for the JSON results (default: benchmarks/results/)",
    )
    args = parser.parse_args(argv)
    if args.output.exists() and not args.output.is_dir():
        parser.error(f"--output {args.output}: not a directory")
    try:  # fail now, not after minutes of measuring
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--output {args.output}: {exc.strerror or exc}")
    if not os.access(args.output, os.W_OK):
        parser.error(f"--output {args.output}: not writable")
    for tool in ("consent", "prefect"):
        if not (BIN / tool).exists():
            parser.error(f"{BIN / tool} not found: run with the project's venv, .venv/bin/python")
    return args


# -- environments --------------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    """The inherited environment without PREFECT_ settings and the CONSENT_ ones the benchmark owns."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PREFECT_") and key not in OWNED_CONSENT_VARIABLES
    }


def prefect_env(prefect_home: Path, api_url: str | None = None) -> dict[str, str]:
    env = base_env() | {"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return env | ({"PREFECT_API_URL": api_url} if api_url else {})


@dataclass(frozen=True)
class Services:
    """Where the Prefect server is, and the temporary directory everything of this benchmark lives in."""

    workdir: Path
    prefect_home: Path
    prefect_api: str


@dataclass(frozen=True)
class SizeSetup:
    """What one measured size runs against: its sandbox, key and consent database."""

    companies: int
    seed: int
    base_url: str
    api_key: str
    directory: Path

    def flow_env(self, services: Services) -> dict[str, str]:
        return prefect_env(services.prefect_home, services.prefect_api) | {
            "CONSENT_DATABASE_URL": f"sqlite:///{self.directory / 'consent.db'}",
            "CONSENT_CODAT_BASE_URL": self.base_url,
            "CONSENT_CODAT_API_KEY": self.api_key,
            "CONSENT_NOTIFY_FILE": str(self.directory / "notifications.jsonl"),
        }


# -- the Prefect server --------------------------------------------------------------------------


def _healthy(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json() is True

    return check


@contextmanager
def prefect_server(workdir: Path) -> Iterator[Services]:
    """`prefect server start` on a free port with its own PREFECT_HOME, until the block ends."""
    home = workdir / "prefect-home"
    home.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = workdir / "prefect-server.log"
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    say(f"starting Prefect server on port {port} (log: {log})")
    with background(command, prefect_env(home), log) as process:
        waited = wait_until_ready(
            _healthy(f"{api}/health"), process, "prefect server", log, PREFECT_START_TIMEOUT
        )
        say(f"Prefect server healthy after {waited:.1f} s")
        yield Services(workdir=workdir, prefect_home=home, prefect_api=api)
    say("Prefect server stopped")


def _seconds(task_run: Mapping[str, Any]) -> float | None:
    start, end = task_run.get("start_time"), task_run.get("end_time")
    if not (start and end):
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def task_runs_of(api: str, flow_run_id: str) -> tuple[int, list[dict[str, Any]]]:
    """How many task runs a flow run has, and (the first 200 of) their names, states and seconds.

    The server records task runs from events, after the flow process has gone: this waits until the count
    has settled and every task run has reached a final state.
    """
    of_run = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    finished = of_run | {"task_runs": {"state": {"type": {"any_": TERMINAL_STATES}}}}
    deadline = time.monotonic() + TASK_RUNS_SETTLE_TIMEOUT
    previous: tuple[int, int] | None = None
    with httpx.Client(base_url=api, timeout=10.0) as http:

        def count(body: dict[str, Any]) -> int:
            response = http.post("/task_runs/count", json=body)
            response.raise_for_status()
            return int(response.json())

        while True:
            current = (count(of_run), count(finished))
            settled = current == previous and current[0] == current[1] > 0
            if settled or time.monotonic() > deadline:
                break
            previous = current
            time.sleep(0.5)
        if not settled:
            say(
                f"  warning: task runs of {flow_run_id} still changing after {TASK_RUNS_SETTLE_TIMEOUT:.0f} s"
            )
        body = of_run | {"sort": "EXPECTED_START_TIME_ASC", "limit": TASK_RUN_DETAILS_LIMIT}
        response = http.post("/task_runs/filter", json=body)
        response.raise_for_status()
    details = [
        {"name": run["name"], "state": run["state_type"], "seconds": _seconds(run)} for run in response.json()
    ]
    return current[0], details


# -- the sandbox ---------------------------------------------------------------------------------


class SandboxAdmin:
    """The sandbox's admin routes (`/_sandbox/...`): its clock and its request counters."""

    def __init__(self, base_url: str, api_key: str) -> None:
        token = base64.b64encode(api_key.encode()).decode()
        self._http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Basic {token}"}, timeout=30.0
        )

    def close(self) -> None:
        self._http.close()

    def ready(self) -> bool:
        try:
            return self._http.get("/_sandbox/clock").status_code == 200
        except httpx.HTTPError:
            return False

    def now(self) -> str:
        return self._get("/_sandbox/clock")["now"]

    def limits(self) -> dict[str, int]:
        return self._get("/_sandbox/limits")

    def requests(self) -> dict[str, Any]:
        return self._get("/_sandbox/requests")

    def clear_requests(self) -> None:
        self._http.delete("/_sandbox/requests").raise_for_status()

    def _get(self, path: str) -> Any:
        response = self._http.get(path)
        response.raise_for_status()
        return response.json()


@contextmanager
def sandbox(setup: SizeSetup, port: int) -> Iterator[SandboxAdmin]:
    """`consent sandbox serve` with `setup.companies` companies, clock frozen, limits out of the way."""
    options = {
        "--host": "127.0.0.1",
        "--port": port,
        "--companies": setup.companies,
        "--seed": setup.seed,
        "--now": SANDBOX_NOW,
        "--rate-limit-per-minute": UNTHROTTLED_PER_MINUTE,
        "--concurrent-per-company": UNTHROTTLED_PER_COMPANY,
    }
    command = [
        str(BIN / "consent"),
        "sandbox",
        "serve",
        *(str(part) for item in options.items() for part in item),
    ]
    env = base_env() | {"CONSENT_CODAT_API_KEY": setup.api_key}
    log = setup.directory / "sandbox.log"
    admin = SandboxAdmin(setup.base_url, setup.api_key)
    try:
        with background(command, env, log) as process:
            timeout = 120.0 + setup.companies / 500  # seeding grows with the size
            waited = wait_until_ready(admin.ready, process, "sandbox", log, timeout)
            say(f"  sandbox with {setup.companies} companies ready after {waited:.1f} s ({admin.limits()})")
            yield admin
    finally:
        admin.close()


# -- measurements --------------------------------------------------------------------------------


@dataclass
class FlowMeasurement:
    flow_run_id: str
    state: str
    wall_seconds: float
    process_seconds: float  # the whole child process: interpreter, imports, the call, exit
    peak_rss_mb: float
    task_runs: int
    task_run_seconds: list[dict[str, Any]]  # name, final state, seconds from start to end
    sandbox_requests: int
    sandbox_requests_not_2xx: int
    sandbox_requests_by_route: dict[str, Any]
    connections_seen: int | None
    notifications_queued: int | None
    summary: dict[str, Any]


@dataclass
class Row:
    flow: str
    companies: int
    seed: int
    now: str
    first: FlowMeasurement
    rerun: FlowMeasurement
    raw_paging: dict[str, Any] | None

    @property
    def raw_seconds(self) -> float | None:
        return self.raw_paging["wall_seconds"] if self.raw_paging else None

    @property
    def ratio(self) -> float | None:
        """Flow wall over raw paging wall: how much the flow costs beyond fetching the same pages."""
        return self.first.wall_seconds / self.raw_seconds if self.raw_seconds else None


def not_2xx(counters: Mapping[str, Any]) -> int:
    return sum(
        count
        for statuses in counters.get("by_status", {}).values()
        for status, count in statuses.items()
        if not status.startswith("2")
    )


def slowest(task_runs: Sequence[Mapping[str, Any]], top: int = 3) -> str:
    timed = sorted((run for run in task_runs if run["seconds"] is not None), key=lambda run: -run["seconds"])
    return ", ".join(f"{run['name']} {run['seconds']:.2f} s" for run in timed[:top]) or "-"


def run_flow(
    spec: FlowSpec, setup: SizeSetup, services: Services, admin: SandboxAdmin, label: str
) -> FlowMeasurement:
    admin.clear_requests()
    command = [sys.executable, "-m", "benchmarks._flow_runner", spec.name, "--now", admin.now()]
    log = setup.directory / f"flow-{label}.log"
    started = time.monotonic()
    record = run_json(command, setup.flow_env(services), log, FLOW_TIMEOUT, f"flow {spec.name} ({label})")
    process_seconds = time.monotonic() - started
    counters = admin.requests()
    task_runs, task_run_details = task_runs_of(services.prefect_api, record["flow_run_id"])
    measured = FlowMeasurement(
        flow_run_id=record["flow_run_id"],
        state=record["state"],
        wall_seconds=record["wall_seconds"],
        process_seconds=process_seconds,
        peak_rss_mb=record["peak_rss_mb"],
        task_runs=task_runs,
        task_run_seconds=task_run_details,
        sandbox_requests=counters["total"],
        sandbox_requests_not_2xx=not_2xx(counters),
        sandbox_requests_by_route=counters["counts"],
        connections_seen=spec.connections_seen(record["summary"]),
        notifications_queued=spec.notifications_queued(record["summary"]),
        summary=record["summary"],
    )
    say(
        f"  {label}: {measured.wall_seconds:.2f} s in the flow ({process_seconds:.1f} s process), "
        f"{task_runs} task runs, {measured.sandbox_requests} requests, "
        f"{measured.notifications_queued} notifications queued"
    )
    say(f"  slowest tasks: {slowest(task_run_details)}")
    if measured.sandbox_requests_not_2xx:
        say(f"  warning: {measured.sandbox_requests_not_2xx} responses not 2xx: {counters['by_status']}")
    return measured


def run_raw_paging(
    page_size: int, setup: SizeSetup, services: Services, admin: SandboxAdmin
) -> dict[str, Any]:
    admin.clear_requests()
    command = [sys.executable, "-m", "benchmarks._raw_paging", "--page-size", str(page_size)]
    log = setup.directory / "raw-paging.log"
    result = run_json(command, setup.flow_env(services), log, FLOW_TIMEOUT, "raw paging")
    result["sandbox_requests"] = admin.requests()["total"]
    say(f"  raw paging: {result['wall_seconds']:.2f} s for {result['requests']} requests")
    return result


def migrate(setup: SizeSetup, services: Services) -> None:
    command = [str(BIN / "consent"), "db", "upgrade"]
    run_quietly(
        command, setup.flow_env(services), setup.directory / "migrate.log", 300.0, "consent db upgrade"
    )


def measure(spec: FlowSpec, companies: int, seed: int, services: Services) -> Row:
    """One flow at one size: its own sandbox and fresh database; the flow twice, then raw paging.

    Raw paging runs last, on a sandbox the flow has already warmed, so the ratio errs against the flow.
    """
    port = free_port()
    setup = SizeSetup(
        companies=companies,
        seed=seed,
        base_url=f"http://127.0.0.1:{port}",
        api_key=secrets.token_urlsafe(24),
        directory=Path(tempfile.mkdtemp(prefix=f"{spec.name}-{companies}-", dir=services.workdir)),
    )
    say(f"{spec.name} with {companies} companies (seed {seed}), files in {setup.directory}")
    with sandbox(setup, port) as admin:
        migrate(setup, services)
        now = admin.now()
        first = run_flow(spec, setup, services, admin, "first")
        rerun = run_flow(spec, setup, services, admin, "rerun")
        raw = run_raw_paging(spec.raw_page_size, setup, services, admin) if spec.raw_page_size else None
    return Row(
        flow=spec.name, companies=companies, seed=seed, now=now, first=first, rerun=rerun, raw_paging=raw
    )


# -- output --------------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits else str(value)


COLUMNS: list[tuple[str, Callable[[Row], str]]] = [
    ("flow", lambda r: r.flow),
    ("companies", lambda r: _number(r.companies)),
    ("connections", lambda r: _number(r.first.connections_seen)),
    ("flow s", lambda r: _number(r.first.wall_seconds, 2)),
    ("rerun s", lambda r: _number(r.rerun.wall_seconds, 2)),
    ("raw paging s", lambda r: _number(r.raw_seconds, 2)),
    ("flow/raw", lambda r: _number(r.ratio, 1)),
    ("peak RSS MB", lambda r: _number(r.first.peak_rss_mb, 1)),
    ("task runs", lambda r: _number(r.first.task_runs)),
    ("requests", lambda r: _number(r.first.sandbox_requests)),
    ("queued", lambda r: _number(r.first.notifications_queued)),
    ("rerun queued", lambda r: _number(r.rerun.notifications_queued)),
]


def render_table(rows: Sequence[Row]) -> str:
    cells = [[render(row) for _, render in COLUMNS] for row in rows]
    headers = [name for name, _ in COLUMNS]
    widths = [max(len(text) for text in column) for column in zip(headers, *cells, strict=True)]

    def line(values: Sequence[str]) -> str:
        first, *rest = values
        return "  ".join(
            [first.ljust(widths[0]), *(v.rjust(w) for v, w in zip(rest, widths[1:], strict=True))]
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def write_json(rows: Sequence[Row], args: argparse.Namespace, started: datetime, output: Path) -> Path:
    path = output / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    document = {
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "command": " ".join(sys.orig_argv),
        "seed": args.seed,
        "sandbox_now": SANDBOX_NOW,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "table": [{name: render(row) for name, render in COLUMNS} for row in rows],
        "rows": [asdict(row) | {"flow_over_raw_paging": row.ratio} for row in rows],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


# -- main ----------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C
    started = datetime.now(UTC)
    specs = [FLOWS[name] for name in args.flows]
    try:
        with (
            tempfile.TemporaryDirectory(prefix="consent-bench-") as workdir,
            prefect_server(Path(workdir)) as services,
        ):
            rows = [measure(spec, size, args.seed, services) for size in args.companies for spec in specs]
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted: the child processes were stopped")
        return 130
    print(render_table(rows))
    say(f"results written to {write_json(rows, args, started, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
