"""Record the consents of every sandbox company in the ledger, as onboarding would; `benchmarks.bench` runs it.

    python -m benchmarks._seed_consents --now 2026-11-01T12:00:00Z --workers 2

Like `consent demo` (`consent_lifecycle.cli.demo`): each company grants, at its Codat `created`
time, each catalog product its Codat `products` lists (`Ledger.grant_many`, default scope: the product's
required types on the company's Linked connections of the right kind; a company with no such connection
is refused, and counted as skipped). Then every `--revoke-every`-th company revokes its first granted
product `--revoke-days` before `now`, so retention has items already due (when it was granted before that).

The companies are read from the sandbox (`/companies`, all pages); the snapshot must already hold them
(the expiry scan writes it). `--workers` processes each grant their share of the companies through a
`Ledger` on their own engine: with SQLite every ledger write takes the database's one write lock, so more
workers only overlap the work done outside it. Settings come from the CONSENT_ environment, as for the
flows. Prints one JSON line: counts and wall seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from benchmarks._raw_paging import _client as codat_http
from consent_lifecycle.clock import parse_iso
from consent_lifecycle.settings import Settings

PAGE_SIZE = 5000
WORDING = "v1"


@dataclass(frozen=True)
class Onboarding:
    """What one company consents to: products (catalog keys, Codat's order), when, and whether it revokes."""

    company_id: str
    created: datetime
    products: tuple[str, ...]
    revokes: bool


@dataclass
class Tally:
    grants: int = 0
    skipped: int = 0  # grants refused: no Linked connection the product can read
    revokes: int = 0
    revokes_skipped: int = 0  # granted after the revocation time: nothing to revoke then
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.grants += other.grants
        self.skipped += other.skipped
        self.revokes += other.revokes
        self.revokes_skipped += other.revokes_skipped
        self.errors += other.errors[: max(0, 5 - len(self.errors))]


async def _companies(settings: Settings) -> list[dict[str, Any]]:
    """Every company of the sandbox, in Codat's order."""
    async with codat_http(settings) as http:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            response = await http.get("/companies", params={"page": page, "pageSize": PAGE_SIZE})
            response.raise_for_status()
            body = response.json()
            found += body["results"]
            if page * PAGE_SIZE >= body["totalResults"]:
                return found
            page += 1


def onboardings(
    companies: Sequence[dict[str, Any]], products: set[str], revoke_every: int
) -> list[Onboarding]:
    """One `Onboarding` per company with a catalog product; every `revoke_every`-th of them revokes."""
    plans = [
        (company, tuple(p for p in company.get("products") or [] if p in products)) for company in companies
    ]
    plans = [(company, wanted) for company, wanted in plans if wanted]
    return [
        Onboarding(
            company_id=company["id"],
            created=parse_iso(company["created"]),
            products=wanted,
            revokes=revoke_every > 0 and index % revoke_every == 0,
        )
        for index, (company, wanted) in enumerate(plans)
    ]


def record(plans: Sequence[Onboarding], revoke_at: datetime) -> Tally:
    """Grant (and revoke) `plans` through one `Ledger` on a fresh engine; runs in a worker process.

    The grants go through `Ledger.grant_many` (one transaction per chunk; refused grants skipped and
    counted, as `Ledger.grant` would refuse them one by one); the revocations one by one after them."""
    from consent_lifecycle.catalog import load_catalog
    from consent_lifecycle.db.engine import make_engine
    from consent_lifecycle.ledger import Ledger

    started = time.perf_counter()
    settings = Settings()
    engine = make_engine(settings.database_url)
    ledger = Ledger(engine, load_catalog(settings.catalog))
    tally = Tally()
    try:
        grants = [
            {
                "company_id": plan.company_id, "product": product, "wording_version": WORDING,
                "actor": "onboarding", "channel": "ui", "at": plan.created,
            }
            for plan in plans
            for product in plan.products
        ]
        refused = ledger.grant_many(grants, skip_refused=True)
        tally.skipped = len(refused)
        tally.grants = len(grants) - len(refused)
        tally.errors = [reason for _, reason in refused[:5]]
        refused_at = {index for index, _ in refused}
        index = 0
        for plan in plans:
            granted = [p for i, p in enumerate(plan.products, start=index) if i not in refused_at]
            index += len(plan.products)
            if plan.revokes and granted:
                if plan.created >= revoke_at:
                    tally.revokes_skipped += 1
                    continue
                ledger.revoke(
                    plan.company_id,
                    granted[0],
                    reason="benchmark",
                    actor="customer",
                    channel="ui",
                    at=revoke_at,
                )
                tally.revokes += 1
    finally:
        engine.dispose()
    tally.seconds = time.perf_counter() - started
    return tally


def seed(now: datetime, workers: int, revoke_every: int, revoke_days: int) -> dict[str, Any]:
    """Read the companies, grant and revoke across `workers` processes; counts and seconds as a dict."""
    from consent_lifecycle.catalog import load_catalog

    started = time.perf_counter()
    settings = Settings()
    companies = asyncio.run(_companies(settings))
    fetched = time.perf_counter() - started
    plans = onboardings(companies, set(load_catalog(settings.catalog).products), revoke_every)
    revoke_at = now - timedelta(days=revoke_days)
    shares = [plans[worker::workers] for worker in range(workers)]
    total = Tally()
    if workers == 1:
        tallies = [record(plans, revoke_at)]
    else:
        context = multiprocessing.get_context("spawn")  # no engine or client crosses into a worker
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            tallies = list(pool.map(record, shares, [revoke_at] * workers))
    for tally in tallies:
        total.add(tally)
    wall = time.perf_counter() - started
    return {
        "wall_seconds": wall,
        "fetch_seconds": fetched,
        "workers": workers,
        "worker_seconds": [t.seconds for t in tallies],
        "companies": len(companies),
        "companies_with_products": len(plans),
        "revoke_at": revoke_at.isoformat().replace("+00:00", "Z"),
        **{key: value for key, value in asdict(total).items() if key != "seconds"},
        "grants_per_second": total.grants / wall if wall else None,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """The largest peak RSS of this process and its (finished) workers, in MB (Linux: ru_maxrss in KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, workers) / 1024


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._seed_consents", description=__doc__)
    parser.add_argument("--now", required=True, type=parse_iso, help="the sandbox's now (ISO 8601)")
    parser.add_argument("--workers", type=int, default=1, help="processes granting (default: 1)")
    parser.add_argument("--revoke-every", type=int, default=10, help="every Nth company revokes (0: none)")
    parser.add_argument("--revoke-days", type=int, default=40, help="revocations this many days before now")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    result = seed(args.now, args.workers, args.revoke_every, args.revoke_days)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
