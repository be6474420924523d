"""The access-check core without HTTP: CPU per single check (`check_one`) and per batch (`check_access`).

    python -m benchmarks.access_core_bench --companies 10000 [--postgres-url postgresql://...]

Seeds the world `benchmarks.api_bench` checks against (`benchmarks._api_seed`), then times random Lending
checks in this process: `check_one` one after another, `check_access` in batches of 1,000 and 10,000.
CPU is this process's (the database server's own CPU, for PostgreSQL, is not in it); wall beside it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks._api_seed import random_checks, seed
from benchmarks.api_bench import postgres_database
from consent_lifecycle.access.check import check_access
from consent_lifecycle.access.single import check_one
from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import utcnow
from consent_lifecycle.db import make_engine, upgrade

SINGLE_CHECKS = 3000


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per run, after one warm-up run."""
    run()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        run()
    return (time.process_time() - cpu) / repeat, (time.perf_counter() - wall) / repeat


def measure(label: str, url: str, companies: int) -> dict[str, Any]:
    upgrade(url)
    engine, catalog = make_engine(url), load_catalog()
    seeded = seed(engine, catalog, companies, companies // 5, utcnow())
    checks = random_checks(seeded, 10_000)
    now = utcnow()

    def singles() -> None:
        for check in checks[:SINGLE_CHECKS]:
            check_one(engine, catalog, **check, now=now)

    cpu, wall = timed(singles, 1)
    result: dict[str, Any] = {
        "database": label, "companies": companies,
        "single_cpu_us": cpu / SINGLE_CHECKS * 1e6, "single_wall_us": wall / SINGLE_CHECKS * 1e6,
    }
    for size in (1000, 10_000):
        frame = pd.DataFrame(checks[:size])
        cpu, wall = timed(lambda frame=frame: check_access(engine, catalog, frame, now), 3)
        result[f"batch_{size}"] = {"cpu_ms": cpu * 1000, "wall_ms": wall * 1000, "pairs_per_cpu_second": size / cpu}
    engine.dispose()
    return result


def rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return round(value, 1) if isinstance(value, float) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="access-core-") as tmp:
        results.append(measure("sqlite", f"sqlite:///{Path(tmp) / 'consent.db'}", args.companies))
    if args.postgres_url:
        with postgres_database(args.postgres_url) as url:
            results.append(measure("postgresql", url, args.companies))
    for r in results:
        print(json.dumps(rounded(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
