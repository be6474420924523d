"""The ledger's single writes and impact previews without HTTP: CPU (and wall) milliseconds per call.

    python -m benchmarks.ledger_write_bench [--companies 1000] [--rounds 200] [--postgres-url postgresql://...]
    python -m benchmarks.ledger_write_bench --profile grant   # cProfile (CPU) of one call kind, top 25 by cumtime

Seeds the world `benchmarks.api_bench` runs against (`benchmarks._api_seed`: three connections a company,
Lending and Dashboard consents), then, on each of `rounds` companies that have no Lending consent, runs in
order: grant lending, extend lending (one optional type), reconfirm lending, grant spend-insights, the
impact preview of revoking lending, revoke lending, the impact preview of disconnecting the accounting
connection, disconnect it. Each call is timed alone; CPU is this process's (what an API worker spends; the
database server's own CPU, for PostgreSQL, is not in it). The JSON lands in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks._api_seed import seed
from benchmarks.api_bench import postgres_database
from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import utcnow
from consent_lifecycle.db import make_engine, upgrade
from consent_lifecycle.ledger import Ledger

RESULTS = Path(__file__).parent / "results"
WHO = {"actor": "bench", "channel": "api"}
CALLS = ("grant", "extend", "reconfirm", "grant_second", "impact_of_revoke", "revoke", "impact_of_disconnect",
         "disconnect")


def steps(ledger: Ledger, company_id: str, connections: list[str], at: Any) -> list[tuple[str, Callable[[], Any]]]:
    accounting = connections[0]
    return [
        ("grant", lambda: ledger.grant(company_id, "lending", wording_version="v1", at=at, **WHO)),
        ("extend", lambda: ledger.extend(company_id, "lending", data_types=["payments"], at=at, **WHO)),
        ("reconfirm", lambda: ledger.reconfirm(company_id, "lending", at=at, **WHO)),
        ("grant_second", lambda: ledger.grant(company_id, "spend-insights", wording_version="v1", at=at, **WHO)),
        ("impact_of_revoke", lambda: ledger.impact_of_revoke(company_id, "lending", at)),
        ("revoke", lambda: ledger.revoke(company_id, "lending", reason="bench", at=at, **WHO)),
        ("impact_of_disconnect", lambda: ledger.impact_of_disconnect(company_id, accounting, at)),
        ("disconnect", lambda: ledger.disconnect(company_id, accounting, at=at, **WHO)),
    ]


def measure(label: str, url: str, companies: int, rounds: int, profile: str | None) -> dict[str, Any]:
    upgrade(url)
    engine, catalog = make_engine(url), load_catalog()
    now = utcnow()
    seeded = seed(engine, catalog, companies, rounds + 5, now)
    ledger = Ledger(engine, catalog)
    at = now + timedelta(seconds=1)
    cpu = {name: 0.0 for name in CALLS}
    wall = {name: 0.0 for name in CALLS}
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, as the figures
    for warm in seeded.free[:5]:  # warm-up: compiled statements, imports, the connection pool
        for _, call in steps(ledger, warm, seeded.connections[warm], at):
            call()
    for company_id in seeded.free[5:]:
        for name, call in steps(ledger, company_id, seeded.connections[company_id], at):
            if profiler is not None and name == profile:
                profiler.enable()
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            call()
            cpu[name] += time.process_time() - started_cpu
            wall[name] += time.perf_counter() - started_wall
            if profiler is not None and name == profile:
                profiler.disable()
    engine.dispose()
    if profiler is not None:
        print(f"--- {label}: {profile}")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    count = len(seeded.free) - 5
    return {
        "database": label, "companies": companies, "calls_each": count,
        "cpu_ms": {name: round(cpu[name] / count * 1000, 2) for name in CALLS},
        "wall_ms": {name: round(wall[name] / count * 1000, 2) for name in CALLS},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--profile", choices=CALLS, default=None)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="ledger-write-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'consent.db'}"
        results.append(measure("sqlite", url, args.companies, args.rounds, args.profile))
    if args.postgres_url:
        with postgres_database(args.postgres_url) as url:
            results.append(measure("postgresql", url, args.companies, args.rounds, args.profile))
    for r in results:
        print(json.dumps(r))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ledger_write_bench.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
