"""Benchmark the event-driven nights: a full first night, then steady nights where Codat's webhooks say what
changed and the reconciliation reads only that.

Run from the repository root:

    .venv/bin/python -m benchmarks.incremental_bench --companies 10000
    .venv/bin/python -m benchmarks.incremental_bench --companies 100000 --nights 2
    .venv/bin/python -m benchmarks.incremental_bench --companies 10000 --no-events   # no receiver, no syncs

As `benchmarks.bench` does (a real Prefect server, one sandbox process and one fresh SQLite database per
size, each flow in its own child process, the request cap lifted: the sandbox is not Codat), and with the
sandbox's sync scheduler on and its webhooks going to a `consent webhooks serve` process that fills the
size's inbox:

- night 1, the first after install: connection-expiry-scan (the snapshot), consents recorded from the
  companies' Codat products (not timed), consent-reconciliation with `full=True`, retention-enforcement as a
  dry run;
- each later night: `--violating` of the companies (default 1%) get a data type no product consents to
  switched on in their sync settings (a Portal edit: no event); the sandbox clock moves a day, so every
  company's syncs run on their schedules and each sync round is told as `read.completed` (not timed: that is
  Codat's day; the advance and the deliveries are reported); codat-events drains the inbox (events/s; the
  violating companies are reconciled and corrected at once); then the nightly cycle, timed: the expiry scan
  (the listing that is also the change detector), consent-reconciliation as scheduled (incremental,
  `sweep_days` 7) and retention-enforcement as a dry run.

Printed: one line per night and flow (wall seconds, Codat requests by the sandbox's count and the
summary's, task runs, peak RSS, companies and requests by reason), and per night the cycle's wall and the
night's Codat requests (codat-events + scan + reconciliation); everything goes to
`<output>/incremental-<UTC timestamp>.json`.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._processes import BenchError, free_port
from benchmarks._report import FlowMeasurement
from benchmarks._services import (
    SandboxAdmin,
    Services,
    SizeSetup,
    prefect_server,
    sandbox,
    say,
    webhook_receiver,
)
from benchmarks.bench import (
    DEFAULT_OUTPUT,
    DEFAULT_TASK_PROCESSES,
    Cycle,
    company_count,
    migrate,
    night_count,
    process_count,
)
from benchmarks.registry import FLOWS, VARIANTS

SCAN = FLOWS["connection-expiry-scan"]
FULL = VARIANTS["consent-reconciliation-full"]
INCREMENTAL = FLOWS["consent-reconciliation"]
RETENTION = FLOWS["retention-enforcement"]
EVENTS = VARIANTS["codat-events"]
#: an Accounting type no product of the catalog consents to: a company syncing it is a violation
UNCONSENTED_TYPE = "journalEntries"
DRAIN_TIMEOUT = 600.0  # the sandbox's bound


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.incremental_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--companies", type=company_count, nargs="+", required=True, metavar="N")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--nights", type=night_count, default=2, metavar="N",
                        help="night 1 full, the others incremental, a day apart (default: 2)")
    parser.add_argument("--violating", type=float, default=0.01, metavar="FRACTION",
                        help="companies given an unconsented type before each later night (default: 0.01)")
    parser.add_argument("--failure-rate", type=float, default=0.02, metavar="FRACTION",
                        help="the sandbox scheduler's failed pulls (default: its own 0.02)")
    parser.add_argument("--no-events", action="store_true",
                        help="no sync scheduler, no receiver, no codat-events: the reconciliation alone")
    parser.add_argument("--task-processes", type=process_count, default=DEFAULT_TASK_PROCESSES, metavar="N")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR")
    args = parser.parse_args(argv)
    for name in ("violating", "failure_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: not a fraction between 0 and 1")
    args.seed_workers, args.profile = 1, False  # what benchmarks.bench.Cycle reads
    args.output.mkdir(parents=True, exist_ok=True)
    return args


def violate(admin: SandboxAdmin, database: Path, fraction: float) -> int:
    """Switch UNCONSENTED_TYPE on, by a Portal edit (no event), for `fraction` of the companies with a Linked
    Accounting connection (every n-th by id, so the choice is the same for a seed)."""
    if fraction <= 0:
        return 0
    with sqlite3.connect(database) as db:
        companies = [row[0] for row in db.execute(
            "SELECT DISTINCT company_id FROM connections WHERE status = 'Linked' AND source_type = 'Accounting' "
            "ORDER BY company_id")]
    step = max(1, round(1 / fraction))
    chosen = companies[::step]
    for company in chosen:
        settings = admin.get(f"/companies/{company}/syncSettings")["settings"]
        settings = [s for s in settings if s["dataType"] != UNCONSENTED_TYPE] + [
            {"dataType": UNCONSENTED_TYPE, "fetchOnFirstLink": True, "syncSchedule": 24, "syncOrder": 0}]
        admin.post(f"/_sandbox/companies/{company}/syncSettings", {"companyId": company, "settings": settings, "overridesDefaults": True})
    return len(chosen)


def row_of(companies: int, night: int, spec_name: str, measured: FlowMeasurement) -> dict[str, Any]:
    summary = measured.summary
    return {
        "companies": companies, "night": night, "flow": spec_name,
        "wall_seconds": round(measured.wall_seconds, 2), "peak_rss_mb": round(measured.peak_rss_mb, 1),
        "task_runs": measured.task_runs, "sandbox_requests": measured.sandbox_requests,
        "codat_requests": summary.get("codat_requests"),
        "companies_read": summary.get("companies"), "reasons": summary.get("reasons"),
        "codat_requests_by_reason": summary.get("codat_requests_by_reason"),
        "deferred": summary.get("deferred"), "outcome": measured.outcome,
        "events": sum((summary.get("processed") or {}).values()) if spec_name == EVENTS.name else None,
    }


def measure_size(companies: int, args: argparse.Namespace, services: Services) -> tuple[list[dict], list[dict]]:
    port = free_port()
    setup = SizeSetup(
        companies=companies, seed=args.seed, base_url=f"http://127.0.0.1:{port}", api_key=secrets.token_urlsafe(24),
        directory=Path(tempfile.mkdtemp(prefix=f"incremental-{companies}-", dir=services.workdir)),
        task_processes=args.task_processes,
    )
    events = not args.no_events
    rows: list[dict[str, Any]] = []
    nights: list[dict[str, Any]] = []
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with sandbox(setup, port, sync_scheduler=events) as admin:
        migrate(setup, services)
        cycle = Cycle(setup, services, admin, args)
        receiver = webhook_receiver(setup, services, secret) if events else None
        url = receiver.__enter__() if receiver else None
        try:
            if url:
                admin.post("/_sandbox/webhooks", {"url": url, "secret": secret})
                admin.post("/_sandbox/scheduler", {"enabled": True, "failure_rate": args.failure_rate})
            for night in range(1, args.nights + 1):
                record: dict[str, Any] = {"companies": companies, "night": night}
                if night > 1:
                    if events:
                        record["violating_companies"] = violate(admin, setup.directory / "consent.db", args.violating)
                    started = time.monotonic()
                    cycle.next_night()
                    record["advance_seconds"] = round(time.monotonic() - started, 1)
                    if events:
                        started = time.monotonic()
                        drained = admin.post("/_sandbox/webhooks/drain", {"timeout": DRAIN_TIMEOUT},
                                             timeout=DRAIN_TIMEOUT + 30)
                        record["drain_seconds"] = round(time.monotonic() - started, 1)
                        record["deliveries"] = drained
                        say(f"  advance {record['advance_seconds']} s, deliveries drained in "
                            f"{record['drain_seconds']} s: {drained}")
                flows = [SCAN, FULL, RETENTION] if night == 1 else [EVENTS, SCAN, INCREMENTAL, RETENTION]
                if night > 1 and not events:
                    flows.remove(EVENTS)
                cycle_seconds, requests = 0.0, {}
                for spec in flows:
                    if spec.needs_consents and not cycle.seeded:
                        cycle.seed_consents()
                    say(f"{spec.name} at {companies} companies, night {night}")
                    row = row_of(companies, night, spec.name, cycle.run_flow(spec, "first"))
                    rows.append(row)
                    requests[spec.name] = row["sandbox_requests"]
                    if spec is not EVENTS:
                        cycle_seconds += row["wall_seconds"]
                    if spec is EVENTS and row["wall_seconds"] > 0:
                        record["events_per_second"] = round(row["events"] / row["wall_seconds"], 1)
                record |= {"cycle_seconds": round(cycle_seconds, 2), "requests_by_flow": requests,
                           "codat_requests": sum(requests.values())}
                nights.append(record)
                say(f"  night {night}: cycle {record['cycle_seconds']} s, {record['codat_requests']} Codat requests "
                    f"{requests}")
        finally:
            if receiver:
                receiver.__exit__(None, None, None)
    return rows, nights


def render(rows: list[dict[str, Any]], nights: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        line = (f"{r['companies']:>7} night {r['night']} {r['flow']:<28} {r['wall_seconds']:>8.2f} s "
                f"{r['sandbox_requests']:>7} requests (summary {r['codat_requests']}), {r['task_runs']} task runs, "
                f"peak RSS {r['peak_rss_mb']} MB")
        if r["reasons"] is not None:
            line += f"\n{'':>16}companies by reason {r['reasons']}; requests by reason {r['codat_requests_by_reason']}"
        if r["events"] is not None:
            line += f"\n{'':>16}{r['outcome']}"
        lines.append(line)
    lines.append("")
    for n in nights:
        lines.append(
            f"{n['companies']:>7} night {n['night']}: nightly cycle {n['cycle_seconds']:.1f} s, "
            f"{n['codat_requests']} Codat requests ({n['codat_requests'] / n['companies']:.2f} per company)"
            + (f", codat-events {n['events_per_second']} events/s" if "events_per_second" in n else "")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    try:
        with tempfile.TemporaryDirectory(prefix="consent-bench-") as workdir, prefect_server(Path(workdir)) as services:
            measured = [measure_size(size, args, services) for size in args.companies]
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted: the child processes were stopped")
        return 130
    rows = [row for size_rows, _ in measured for row in size_rows]
    nights = [night for _, size_nights in measured for night in size_nights]
    print(render(rows, nights))
    path = args.output / f"incremental-{started:%Y%m%dT%H%M%SZ}.json"
    command = "python -m benchmarks.incremental_bench " + " ".join(sys.argv[1:] if argv is None else argv)
    path.write_text(json.dumps({"command": command, "started": started.isoformat(), "rows": rows,
                                "nights": nights}, indent=2))
    say(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
