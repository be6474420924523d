"""Raw async httpx paging of the pages the expiry scan fetches, as a floor for the scan's wall time.

    python -m benchmarks._raw_paging --page-size 5000

Like the scan: one request for a one-company page 1 to learn how many pages there are (`totalResults`,
as `tasks.codat.count_company_pages` does), then every page 1..N, at most
`codat_max_concurrency` requests in flight on one pooled client. Each body is decoded as JSON (paging
needs `totalResults`), but nothing is validated or stored. Base URL, key and concurrency come from the
CONSENT_ settings, as for the flow. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx

from consent_lifecycle.settings import Settings

TIMEOUT_SECONDS = 60.0


def _client(settings: Settings) -> httpx.AsyncClient:
    if settings.codat_api_key is None:
        raise SystemExit("CONSENT_CODAT_API_KEY is not set")
    token = base64.b64encode(settings.codat_api_key.get_secret_value().encode()).decode()
    bound = settings.codat_max_concurrency
    return httpx.AsyncClient(
        base_url=settings.codat_base_url,
        headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
        timeout=TIMEOUT_SECONDS,
        limits=httpx.Limits(max_connections=bound, max_keepalive_connections=bound),
    )


async def page_companies(settings: Settings, page_size: int) -> dict[str, Any]:
    slots = asyncio.Semaphore(settings.codat_max_concurrency)
    started = time.perf_counter()
    async with _client(settings) as http:

        async def get(page: int, size: int = page_size) -> dict[str, Any]:
            async with slots:
                response = await http.get("/companies", params={"page": page, "pageSize": size})
            response.raise_for_status()
            return response.json()

        first = await get(1, 1)  # as the scan counts: a one-company page, whose totalResults is the count
        page_count = -(-first["totalResults"] // page_size)
        pages = await asyncio.gather(*(get(number) for number in range(1, page_count + 1)))
    wall = time.perf_counter() - started
    companies = [company for page in pages for company in page["results"]]
    return {
        "wall_seconds": wall,
        "requests": 1 + page_count,
        "pages": page_count,
        "companies": len(companies),
        "connections": sum(len(company.get("dataConnections") or []) for company in companies),
        "concurrency": settings.codat_max_concurrency,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._raw_paging", description=__doc__)
    parser.add_argument("--page-size", type=int, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(page_companies(Settings(), args.page_size))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
