"""Benchmark, under `make serve`, the time from a webhook telling of an unconsented pull to the company's sync
settings corrected at Codat, at a steady rate of events.

Run from the repository root:

    .venv/bin/python -m benchmarks.webhook_latency_bench
    .venv/bin/python -m benchmarks.webhook_latency_bench --companies 1000 --rate 50 --seconds 60 --violating 0.1

It starts `python -m deployments.serve` (what `make serve` runs: a Prefect server, the sandbox with its
sync scheduler, the webhook receiver, every deployment of prefect.yaml served with its triggers) on free
ports with a temporary PREFECT_HOME and consent database, then, not timed: the expiry scan (the snapshot),
consents recorded from the companies' Codat products, a full reconciliation (every company's sync settings
set to exactly its entitled types), and waits for the inbox to drain.

Then for `--seconds` at `--rate` events per second, each tick a pull at the sandbox of a company, reported
by the sandbox as `read.completed` to the receiver: a `--violating` share of them are of `journalEntries`
(a type no product consents to) on a company whose sync settings a Portal edit has just switched that type
on (no event tells of the edit); the rest are of a type the company consented to (a read that costs
nothing). Nothing else runs the flows: the receiver nudges the `codat-events` deployment through its Prefect
trigger. A poller reads each violating company's sync settings every `--poll` seconds until the type is
gone. Latency = settings corrected - pull reported (the delivery leaves the sandbox within milliseconds of
the pull; the poll interval bounds the error). Printed: p50, p95, max, the ones not corrected within
`--settle` seconds, and the codat-events flow runs; JSON to `<output>/webhook-latency-<UTC timestamp>.json`.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks._processes import BenchError, background, free_port, run_json, run_quietly, wait_until_ready
from benchmarks._services import BIN, base_env, say

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
UNCONSENTED_TYPE = "journalEntries"  # an Accounting type no product of the catalog consents to
SERVE_START_TIMEOUT = 300.0
SETUP_TIMEOUT = 1800.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webhook_latency_bench",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--companies", type=int, default=1000, help="sandbox companies (default 1000)")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second (default 50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs (default 60)")
    parser.add_argument("--violating", type=float, default=0.1, help="share of unconsented pulls (default 0.1)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between settings reads (default 0.5)")
    parser.add_argument("--settle", type=float, default=180.0, help="seconds to wait for the last corrections")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR")
    args = parser.parse_args(argv)
    for name, low, high in (("companies", 10, 100_000), ("rate", 0.1, 1000), ("seconds", 1, 3600),
                            ("violating", 0.0, 1.0), ("poll", 0.05, 10), ("settle", 1, 3600)):
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name} {getattr(args, name)}: not in {low}..{high}")
    args.output.mkdir(parents=True, exist_ok=True)
    return args


class Served:
    """`deployments.serve` in the background, and what a second terminal needs to reach it."""

    def __init__(self, workdir: Path, companies: int) -> None:
        self.workdir = workdir
        self.key = secrets.token_urlsafe(24)
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.ports = {name: free_port() for name in ("prefect", "sandbox", "webhooks", "api")}
        self.sandbox_url = f"http://127.0.0.1:{self.ports['sandbox']}"
        self.api_url = f"http://127.0.0.1:{self.ports['prefect']}/api"
        self.database = workdir / "consent.db"
        self.companies = companies
        (workdir / "prefect-home").mkdir()

    def env(self) -> dict[str, str]:
        return base_env() | {
            "PREFECT_HOME": str(self.workdir / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "CONSENT_DATABASE_URL": f"sqlite:///{self.database}",
            "CONSENT_CODAT_API_KEY": self.key,
            "CONSENT_CODAT_WEBHOOK_SECRET": self.secret,
            "CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE": "0",  # the sandbox is not Codat
            "CONSENT_NOTIFY_FILE": str(self.workdir / "notices.jsonl"),
        }

    def client_env(self) -> dict[str, str]:
        """A second terminal's: the served Prefect API and the sandbox."""
        return self.env() | {"PREFECT_API_URL": self.api_url, "CONSENT_CODAT_BASE_URL": self.sandbox_url}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "deployments.serve", "--port", str(self.ports["prefect"]),
                "--sandbox-port", str(self.ports["sandbox"]), "--webhook-port", str(self.ports["webhooks"]),
                "--api-port", str(self.ports["api"]),
                "--sandbox-companies", str(self.companies), "--log-dir", str(self.workdir / "logs")]

    def http(self) -> httpx.Client:
        token = base64.b64encode(self.key.encode()).decode()
        return httpx.Client(base_url=self.sandbox_url, headers={"Authorization": f"Basic {token}"}, timeout=30.0)

    def pending_events(self) -> int:
        with sqlite3.connect(self.database) as db:
            return db.execute("SELECT count(*) FROM codat_events WHERE status = 'pending'").fetchone()[0]


def setup(served: Served, log_dir: Path) -> list[dict[str, Any]]:
    """The snapshot, the consents, a full reconciliation; the companies with a Linked Accounting connection,
    each with that connection and the types it is entitled to there."""
    env = served.client_env()
    consent = str(BIN / "consent")
    with served.http() as http:
        now = http.get("/_sandbox/clock").json()["now"]
        # the load's own requests (settings edits, pulls, the poller) are the sandbox's, not the flows': out
        # of the way of its per-minute limit, which the flows' retries would otherwise measure
        limits = {"rate_limit_per_minute": 100_000_000, "concurrent_per_company": 10_000}
        http.post("/_sandbox/limits", json=limits).raise_for_status()
    run_quietly([consent, "run", "expiry-scan"], env, log_dir / "scan.log", SETUP_TIMEOUT, "expiry scan")
    run_json([sys.executable, "-m", "benchmarks._seed_consents", "--now", now], env, log_dir / "seed.log",
             SETUP_TIMEOUT, "recording consents")
    run_quietly([consent, "run", "reconcile", "--full"], env, log_dir / "reconcile.log", SETUP_TIMEOUT,
             "full reconciliation")
    from consent_lifecycle.catalog import load_catalog
    from consent_lifecycle.db.engine import make_engine
    from consent_lifecycle.ledger import Ledger

    engine = make_engine(f"sqlite:///{served.database}")
    entitled = Ledger(engine, load_catalog()).entitlements(now=datetime.now(UTC))
    engine.dispose()
    with sqlite3.connect(served.database) as db:
        linked = db.execute("SELECT company_id, id FROM connections WHERE status = 'Linked' "
                            "AND source_type = 'Accounting' AND deleted_at IS NULL ORDER BY company_id").fetchall()
    types = entitled.groupby("connection_id")["data_type"].agg(sorted).to_dict()
    return [{"company_id": c, "connection_id": n, "types": types[n]} for c, n in linked if types.get(n)]


class Poller(threading.Thread):
    """Reads each pending company's sync settings every `interval` seconds until the type is gone."""

    def __init__(self, served: Served, interval: float) -> None:
        super().__init__(daemon=True)
        self.served, self.interval = served, interval
        self.pending: dict[str, float] = {}
        self.latencies: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def watch(self, company: str, reported: float) -> None:
        with self.lock:
            self.pending[company] = reported

    def run(self) -> None:
        with self.served.http() as http:
            while not self.stopping.is_set():
                with self.lock:
                    watched = list(self.pending.items())
                for company, reported in watched:
                    settings = http.get(f"/companies/{company}/syncSettings").json()["settings"]
                    if all(s["dataType"] != UNCONSENTED_TYPE for s in settings):
                        with self.lock:
                            self.latencies[company] = time.monotonic() - reported
                            self.pending.pop(company, None)
                self.stopping.wait(self.interval)


def load(served: Served, plan: list[dict[str, Any]], args: argparse.Namespace, poller: Poller) -> dict[str, int]:
    """`args.rate` pulls a second for `args.seconds`: violating ones on companies not used before."""
    violators = iter(plan[::2])
    readers = plan[1::2] or plan
    sent = {"violating": 0, "consented": 0}
    interval, started = 1.0 / args.rate, time.monotonic()
    tick = 0
    with served.http() as http:
        while (due := started + tick * interval) < started + args.seconds:
            time.sleep(max(0.0, due - time.monotonic()))
            tick += 1
            if (tick * args.violating) % 1 < args.violating and (target := next(violators, None)) is not None:
                company = target["company_id"]
                settings = http.get(f"/companies/{company}/syncSettings").json()["settings"]
                settings.append({"dataType": UNCONSENTED_TYPE, "fetchOnFirstLink": True, "syncSchedule": 24,
                                 "syncOrder": 0})
                edit = {"companyId": company, "settings": settings, "overridesDefaults": True}
                http.post(f"/_sandbox/companies/{company}/syncSettings", json=edit).raise_for_status()
                pull = {"dataType": UNCONSENTED_TYPE, "connectionId": target["connection_id"]}
                http.post(f"/_sandbox/companies/{company}/pulls", json=pull).raise_for_status()
                poller.watch(company, time.monotonic())
                sent["violating"] += 1
            else:
                target = readers[tick % len(readers)]
                pull = {"dataType": target["types"][tick % len(target["types"])],
                        "connectionId": target["connection_id"]}
                http.post(f"/_sandbox/companies/{target['company_id']}/pulls", json=pull).raise_for_status()
                sent["consented"] += 1
    return sent


def flow_runs(api_url: str) -> dict[str, Any]:
    body = {"flows": {"name": {"any_": ["codat-events"]}}, "sort": "START_TIME_ASC", "limit": 200}
    runs = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=30.0).json()
    states: dict[str, int] = {}
    for run in runs:
        states[run["state_name"]] = states.get(run["state_name"], 0) + 1
    return {"runs": len(runs), "by_state": states}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    try:
        with tempfile.TemporaryDirectory(prefix="consent-latency-") as workdir:
            served = Served(Path(workdir), args.companies)
            log = Path(workdir) / "serve.log"
            say(f"starting deployments.serve with {args.companies} companies (log: {log})")
            with background(served.command(), served.env(), log) as process:
                waited = wait_until_ready(lambda: "Serving" in log.read_text(errors="replace"), process,
                                          "deployments.serve", log, SERVE_START_TIMEOUT)
                say(f"  serving after {waited:.1f} s; setting up (scan, consents, full reconciliation)")
                plan = setup(served, Path(workdir))
                deadline = time.monotonic() + SETUP_TIMEOUT
                while served.pending_events() and time.monotonic() < deadline:
                    time.sleep(1.0)
                before = flow_runs(served.api_url)["runs"]
                say(f"  {len(plan)} companies with an entitled Linked Accounting connection; inbox drained; "
                    f"load: {args.rate}/s for {args.seconds:.0f} s, {args.violating:.0%} unconsented")
                poller = Poller(served, args.poll)
                poller.start()
                sent = load(served, plan, args, poller)
                settle = time.monotonic() + args.settle
                while poller.pending and time.monotonic() < settle:
                    time.sleep(0.5)
                poller.stopping.set()
                poller.join()
                runs = flow_runs(served.api_url)
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    latencies = list(poller.latencies.values())
    result = {
        "command": "python -m benchmarks.webhook_latency_bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": started.isoformat(), "companies": args.companies, "rate": args.rate, "seconds": args.seconds,
        "sent": sent, "corrected": len(latencies), "not_corrected": len(poller.pending),
        "codat_events_runs": runs["runs"] - before, "codat_events_states": runs["by_state"],
        "p50_seconds": round(statistics.median(latencies), 2) if latencies else None,
        "p95_seconds": round(percentile(latencies, 0.95), 2) if latencies else None,
        "max_seconds": round(max(latencies), 2) if latencies else None,
    }
    print(json.dumps(result, indent=2))
    path = args.output / f"webhook-latency-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    say(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
