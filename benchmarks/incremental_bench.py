"""Benchmark a full night against the incremental night after it: Codat requests (by reason) and wall time.

Run from the repository root:

    .venv/bin/python -m benchmarks.incremental_bench --companies 10000
    .venv/bin/python -m benchmarks.incremental_bench --companies 1000 10000 --nights 3

As `benchmarks.bench` does (a real Prefect server, one sandbox process and one fresh SQLite database per
size, each flow in its own child process, the request cap lifted): night 1 is the first after install:
connection-expiry-scan (the snapshot), consents recorded from the companies' Codat products (not timed),
then consent-reconciliation with `full=True`. The sandbox clock then moves a day (what was queued at Codat
the night before has finished: its connections' lastSync moved), and each later night is the expiry scan
(the listing that records lastSync) and consent-reconciliation as scheduled: incremental, `sweep_days` 7.

No webhook receiver runs here, so a lastSync moved by last night's remediation has no read.completed beside
it: those companies are read again as lost_webhook (with the receiver and codat-events they would not be).

Printed: one line per night and flow, with wall seconds, Codat requests (the sandbox's count and the
summary's), companies by reason and requests by reason; everything goes to
`<output>/incremental-<UTC timestamp>.json`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._processes import BenchError, free_port
from benchmarks._services import Services, SizeSetup, prefect_server, sandbox, say
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.incremental_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--companies", type=company_count, nargs="+", required=True, metavar="N")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--nights", type=night_count, default=2, metavar="N",
                        help="night 1 full, the others incremental, a day apart (default: 2)")
    parser.add_argument("--task-processes", type=process_count, default=DEFAULT_TASK_PROCESSES, metavar="N")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR")
    args = parser.parse_args(argv)
    args.seed_workers, args.profile = 1, False  # what benchmarks.bench.Cycle reads
    args.output.mkdir(parents=True, exist_ok=True)
    return args


def measure_size(companies: int, args: argparse.Namespace, services: Services) -> list[dict[str, Any]]:
    port = free_port()
    setup = SizeSetup(
        companies=companies, seed=args.seed, base_url=f"http://127.0.0.1:{port}", api_key=secrets.token_urlsafe(24),
        directory=Path(tempfile.mkdtemp(prefix=f"incremental-{companies}-", dir=services.workdir)),
        task_processes=args.task_processes,
    )
    rows = []
    with sandbox(setup, port) as admin:
        migrate(setup, services)
        cycle = Cycle(setup, services, admin, args)
        for night in range(1, args.nights + 1):
            if night > 1:
                cycle.next_night()
            for spec in (SCAN, FULL if night == 1 else INCREMENTAL):
                if spec.needs_consents and not cycle.seeded:
                    cycle.seed_consents()
                say(f"{spec.name} at {companies} companies, night {night}")
                measured = cycle.run_flow(spec, "first")
                summary = measured.summary
                rows.append({
                    "companies": companies, "night": night, "flow": spec.name,
                    "wall_seconds": round(measured.wall_seconds, 2), "peak_rss_mb": round(measured.peak_rss_mb, 1),
                    "task_runs": measured.task_runs, "sandbox_requests": measured.sandbox_requests,
                    "codat_requests": summary.get("codat_requests"),
                    "companies_read": summary.get("companies"), "reasons": summary.get("reasons"),
                    "codat_requests_by_reason": summary.get("codat_requests_by_reason"),
                    "deferred": summary.get("deferred"), "outcome": measured.outcome,
                })
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        line = (f"{r['companies']:>7} night {r['night']} {r['flow']:<28} {r['wall_seconds']:>8.2f} s "
                f"{r['sandbox_requests']:>7} requests (summary {r['codat_requests']}), {r['task_runs']} task runs, "
                f"peak RSS {r['peak_rss_mb']} MB")
        if r["reasons"] is not None:
            line += f"\n{'':>16}companies by reason {r['reasons']}; requests by reason {r['codat_requests_by_reason']}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    try:
        with tempfile.TemporaryDirectory(prefix="consent-bench-") as workdir, prefect_server(Path(workdir)) as services:
            rows = [row for size in args.companies for row in measure_size(size, args, services)]
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted: the child processes were stopped")
        return 130
    print(render(rows))
    path = args.output / f"incremental-{started:%Y%m%dT%H%M%SZ}.json"
    command = "python -m benchmarks.incremental_bench " + " ".join(sys.argv[1:] if argv is None else argv)
    path.write_text(json.dumps({"command": command, "started": started.isoformat(), "rows": rows}, indent=2))
    say(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
