"""The Consent API under load (issue 17's targets): access checks, batches of checks, grants and revokes.

    python -m benchmarks.api_bench --companies 10000 [--postgres-url postgresql://postgres@127.0.0.1/postgres]

Per database (a SQLite file; and a fresh PostgreSQL database on the server of `--postgres-url`, dropped
afterwards): migrate, seed `--companies` companies set-wise (`benchmarks._api_seed`), create a Lending key
(`consent api-keys create --product lending`), start `consent api serve --workers W`, then measure
1. single checks: `--clients` closed-loop connections POSTing random `/v1/access/check` bodies for
   `--seconds` (after a warm-up), with wrk when available (`benchmarks._api_load`): checks/s, latency
   percentiles, the server's and the generator's CPU;
2. batches: `/v1/access/checks` with `--batch-sizes` pairs: pairs/s;
3. grant/revoke: `--grant-clients` connections granting then revoking Lending over distinct companies: ops/s.
Targets: >= 2,000 checks/s with p99 <= 20 ms; >= 50,000 pairs/s; >= 200 grant/revoke ops/s on PostgreSQL.
JSON to benchmarks/results/api-<timestamp>.json, a summary on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from benchmarks import _api_load as load
from benchmarks._api_seed import PRODUCT, random_checks, seed
from benchmarks._processes import ROOT, background, free_port, wait_until_ready
from benchmarks._services import BIN, base_env, say
from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import utcnow
from consent_lifecycle.db import make_engine, upgrade

RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"checks_per_second": 2000, "p99_ms": 20, "pairs_per_second": 50_000, "grant_revoke_per_second": 200}
WARMUP_SECONDS = 3
CHECK_BODIES = 10_000


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server of `server_url`; its URL; dropped afterwards."""
    name = f"consent_apibench_{uuid.uuid4().hex[:12]}"
    admin = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def consent_env(url: str) -> dict[str, str]:
    """The CLI's environment: this checkout's code, the database, no Prefect."""
    return base_env() | {"CONSENT_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}


def create_key(url: str, workdir: Path) -> str:
    log = workdir / "api-keys.log"
    command = [str(BIN / "python"), "-c", "from consent_lifecycle.cli import main; main()",
               "api-keys", "create", "--product", PRODUCT]
    with log.open("wb") as out:
        result = subprocess.run(command, env=consent_env(url), cwd=ROOT, stdout=subprocess.PIPE, stderr=out, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"consent api-keys create failed ({result.returncode}): {log.read_text()[-500:]}")
    return result.stdout.decode().strip().splitlines()[-1]


def tree_cpu(process: psutil.Process) -> float:
    """CPU seconds of a process and its children (uvicorn's workers)."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@contextmanager
def api_server(url: str, workers: int, workdir: Path, label: str) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    command = [str(BIN / "python"), "-c", "from consent_lifecycle.cli import main; main()", "api", "serve",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    log = workdir / f"api-{label}.log"
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    with background(command, consent_env(url), log) as process:
        wait_until_ready(ready, process, "consent api serve", log, 60)
        yield base, psutil.Process(process.pid)


def measured(server: psutil.Process, run: Any) -> dict[str, Any]:
    before = tree_cpu(server)
    result = run()
    result["server_cpu_seconds"] = tree_cpu(server) - before
    return result


def route_answers(base: str, key: str, path: str, body: dict[str, Any]) -> tuple[int, str]:
    response = httpx.post(f"{base}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return response.status_code, response.text[:300]


def bench_database(args: argparse.Namespace, label: str, url: str, workdir: Path) -> dict[str, Any]:
    say(f"[{label}] migrate and seed {args.companies} companies")
    upgrade(url)
    engine = make_engine(url)
    seeded = seed(engine, load_catalog(), args.companies, args.free, utcnow())
    engine.dispose()
    checks = random_checks(seeded, CHECK_BODIES)
    result: dict[str, Any] = {
        "database": label, "companies": args.companies, "seed_seconds": seeded.seconds, "grants": seeded.grants,
        "revokes": seeded.revokes,
    }
    key = create_key(url, workdir)
    with api_server(url, args.workers, workdir, label) as (base, server):
        status, text = route_answers(base, key, args.check_path, checks[0])
        if status != 200:
            result["single"] = result["batch"] = {"skipped": f"POST /v1/access/check answered {status}: {text}"}
            say(f"[{label}] access routes not served ({status}): single and batch phases skipped")
        else:
            say(f"[{label}] single checks: {args.clients} clients, {args.seconds:.0f} s (+{WARMUP_SECONDS} s warm-up)")
            load.single_checks(base, key, checks, clients=args.clients, seconds=WARMUP_SECONDS, workdir=workdir,
                               path=args.check_path)
            result["single"] = measured(server, lambda: load.single_checks(
                base, key, checks, clients=args.clients, seconds=args.seconds, workdir=workdir, path=args.check_path))
            result["batch"] = []
            for size in args.batch_sizes:
                requests = max(4, min(40, 200_000 // size))
                say(f"[{label}] batches of {size}: {requests} requests")
                result["batch"].append(measured(server, lambda size=size, requests=requests: load.batches(
                    base, key, checks, size=size, requests=requests, clients=args.batch_clients, path=args.checks_path)))
        companies = seeded.free[: args.grant_companies]
        say(f"[{label}] grant/revoke: {len(companies)} companies, {args.grant_clients} clients")
        result["grant_revoke"] = measured(server, lambda: load.grant_revoke(
            base, key, companies, product=PRODUCT, clients=args.grant_clients))
    return result


def summary_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = [f"targets: {TARGETS}"]
    for r in results:
        lines.append(f"== {r['database']}: {r['companies']} companies (seeded in {r['seed_seconds']:.1f} s)")
        single = r.get("single", {})
        if "skipped" in single:
            lines.append(f"  single checks: skipped ({single['skipped']})")
        elif single:
            lat = single["latency_ms"]
            lines.append(
                f"  single checks ({single['generator']}, {single['clients']} clients): "
                f"{single['per_second']:,.0f}/s, p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, "
                f"p99 {lat['p99']:.1f} ms; permitted {single['permitted']}, refused {single['refused']}, "
                f"not 200: {single['not_200']}; server CPU {single['server_cpu_seconds']:.1f} s, "
                f"generator CPU {single['generator_cpu_seconds']:.1f} s over {single['wall_seconds']:.1f} s"
            )
        for b in r.get("batch", []) if isinstance(r.get("batch"), list) else []:
            lines.append(
                f"  batch of {b['size']}: {b['pairs_per_second']:,.0f} pairs/s ({b['ok']}/{b['requests']} ok, "
                f"p50 {b['latency_ms']['p50']:.0f} ms, answers/response {b['answers_per_response']}, "
                f"server CPU {b['server_cpu_seconds']:.1f} s)"
            )
        g = r.get("grant_revoke")
        if g:
            lines.append(
                f"  grant/revoke ({g['clients']} clients, {g['companies']} companies): {g['ops_per_second']:,.0f} ops/s, "
                f"p99 {g['latency_ms']['p99']:.0f} ms, statuses {g['statuses']}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--free", type=int, default=2_000, help="companies without Lending, for grant/revoke")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="uvicorn workers")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10_000])
    parser.add_argument("--batch-clients", type=int, default=2)
    parser.add_argument("--grant-companies", type=int, default=500)
    parser.add_argument("--grant-clients", type=int, default=8)
    parser.add_argument("--check-path", default="/v1/access/check", help=argparse.SUPPRESS)  # to compare routes
    parser.add_argument("--checks-path", default="/v1/access/checks", help=argparse.SUPPRESS)
    parser.add_argument("--postgres-url", default=None, help="also run on a fresh database of this server")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args(argv)
    if args.free >= args.companies:
        parser.error("--free must be below --companies")
    results = []
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
        workdir = Path(tmp)
        if not args.no_sqlite:
            results.append(bench_database(args, "sqlite", f"sqlite:///{workdir / 'consent.db'}", workdir))
        if args.postgres_url:
            with postgres_database(args.postgres_url) as url:
                results.append(bench_database(args, "postgresql", url, workdir))
    report = {"started_at": started.isoformat(), "machine": {"cpus": os.cpu_count()}, "targets": TARGETS,
              "arguments": vars(args), "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"api-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print("\n".join(summary_lines(results)))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
