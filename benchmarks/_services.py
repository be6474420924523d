"""What the benchmark runs against: one Prefect server, and per size a sandbox process and a database.

`prefect_server` starts `prefect server start` (temporary PREFECT_HOME, analytics off) for the whole run;
`sandbox` starts `consent sandbox serve` with its clock frozen at `SANDBOX_NOW` and its rate limits out of
the way; `SizeSetup.flow_env` is the environment a flow process of that size gets (CONSENT_ settings of the
sandbox and a SQLite file database, PREFECT_API_URL of the server); `task_runs_of` reads a flow run's task
runs back from the server.
"""

from __future__ import annotations

import base64
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks._processes import background, free_port, wait_until_ready

SANDBOX_NOW = "2026-11-01T12:00:00Z"  # the sandbox clock is frozen here, so a seed gives the same world
UNTHROTTLED_PER_MINUTE = 100_000_000
UNTHROTTLED_PER_COMPANY = 10_000
PREFECT_START_TIMEOUT = 180.0
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
    "CONSENT_TASK_PROCESSES",
    "CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE",
)


def say(message: str) -> None:
    """Progress, on stderr (stdout carries only the tables)."""
    print(message, file=sys.stderr, flush=True)


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
    task_processes: int = 0  # CONSENT_TASK_PROCESSES of the flows: 0, threads

    def flow_env(self, services: Services) -> dict[str, str]:
        return prefect_env(services.prefect_home, services.prefect_api) | {
            "CONSENT_DATABASE_URL": f"sqlite:///{self.directory / 'consent.db'}",
            "CONSENT_CODAT_BASE_URL": self.base_url,
            "CONSENT_CODAT_API_KEY": self.api_key,
            "CONSENT_NOTIFY_FILE": str(self.directory / "notifications.jsonl"),
            "CONSENT_TASK_PROCESSES": str(self.task_processes),
            # the sandbox is not Codat: the benchmarks measure the flows, not the flows' own request cap
            "CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE": "0",
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
        {"name": run["name"], "task": task_name(run), "state": run["state_type"], "seconds": _seconds(run)}
        for run in response.json()
    ]
    return current[0], details


def task_name(task_run: Mapping[str, Any]) -> str:
    """The task a run is of: its `task_key` without the hash Prefect appends (`scan_batch-1a2b3c` -> `scan_batch`)."""
    key = task_run.get("task_key") or task_run["name"]
    return re.sub(r"-[0-9a-f]{6,}$", "", key)


# -- the sandbox ---------------------------------------------------------------------------------


class SandboxAdmin:
    """The sandbox's admin routes (`/_sandbox/...`): its clock and its request counters."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.pid: int | None = None  # the sandbox process, once started
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

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) the sandbox process has used so far."""
        if self.pid is None:
            return None
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def advance_clock(self, seconds: float) -> str:
        """Move the sandbox's frozen clock on (pulls queued before then finish); its new `now`."""
        # with the sync scheduler on, a day of a large world's syncs runs inside this call (~30 s at 100k)
        response = self._http.post("/_sandbox/clock/advance", json={"seconds": seconds}, timeout=1800.0)
        response.raise_for_status()
        return self.now()

    def post(self, path: str, body: dict[str, Any], timeout: float = 30.0) -> Any:
        response = self._http.post(path, json=body, timeout=timeout)
        response.raise_for_status()
        return response.json() if response.content else None

    def get(self, path: str) -> Any:
        return self._get(path)

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
def sandbox(
    setup: SizeSetup,
    port: int,
    *,
    rate_limit_per_minute: int = UNTHROTTLED_PER_MINUTE,
    concurrent_per_company: int = UNTHROTTLED_PER_COMPANY,
    sync_scheduler: bool = False,
) -> Iterator[SandboxAdmin]:
    """`consent sandbox serve` with `setup.companies` companies, clock frozen, limits out of the way (or
    as given: `benchmarks.rate_limit_bench` sets a low per-minute limit), every company's pull history made
    at start (`--eager-history`: Codat has it already; made on first read, it was sandbox work inside the
    first reconciliation's time)."""
    options = {
        "--host": "127.0.0.1",
        "--port": port,
        "--companies": setup.companies,
        "--seed": setup.seed,
        "--now": SANDBOX_NOW,
        "--rate-limit-per-minute": rate_limit_per_minute,
        "--concurrent-per-company": concurrent_per_company,
    }
    command = [
        str(BIN / "consent"),
        "sandbox",
        "serve",
        *(str(part) for item in options.items() for part in item),
        "--eager-history",
        *(["--sync-scheduler"] if sync_scheduler else []),
    ]
    env = base_env() | {"CONSENT_CODAT_API_KEY": setup.api_key}
    log = setup.directory / "sandbox.log"
    admin = SandboxAdmin(setup.base_url, setup.api_key)
    try:
        with background(command, env, log) as process:
            admin.pid = process.pid
            timeout = 120.0 + setup.companies / 100  # seeding and the histories grow with the size
            waited = wait_until_ready(admin.ready, process, "sandbox", log, timeout)
            say(f"  sandbox with {setup.companies} companies ready after {waited:.1f} s ({admin.limits()})")
            yield admin
    finally:
        admin.close()


# -- the webhook receiver ------------------------------------------------------------------------


@contextmanager
def webhook_receiver(setup: SizeSetup, services: Services, secret: str) -> Iterator[str]:
    """`consent webhooks serve` on a free port, filling the size's consent database; its webhook URL."""
    port = free_port()
    log = setup.directory / "webhooks.log"
    command = [str(BIN / "consent"), "webhooks", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--alerts-file", str(setup.directory / "alerts.jsonl")]
    env = setup.flow_env(services) | {"CONSENT_CODAT_WEBHOOK_SECRET": secret}
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/alerts", timeout=2.0).status_code == 405  # a POST route: it listens
        except httpx.HTTPError:
            return False

    with background(command, env, log) as process:
        waited = wait_until_ready(ready, process, "webhook receiver", log, 60.0)
        say(f"  webhook receiver ready after {waited:.1f} s")
        yield f"{base}/webhooks/codat"
