"""The client's request count and its own rate cap (CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE), over the sandbox."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from consent_lifecycle.codat import CodatClient, RetryPolicy
from consent_lifecycle.codat.ratelimit import RateLimiter
from consent_lifecycle.settings import Settings
from tests.fixtures_sandbox import sandbox_client

FAST = RetryPolicy(initial_delay=0.01, max_delay=0.05, max_attempts=20)


def sandbox_total(sandbox) -> int:
    with sandbox_client(sandbox) as http:
        return http.get("/_sandbox/requests").json()["total"]


def clear_requests(sandbox) -> None:
    with sandbox_client(sandbox) as http:
        http.delete("/_sandbox/requests").raise_for_status()


def test_a_cap_spaces_requests_even_when_sent_at_once(fresh_sandbox, tmp_path):
    """120 a minute is one every 0.5 s: 7 requests sent together take at least 3 s (the first goes at once)."""

    async def run():
        async with CodatClient(
            fresh_sandbox.base_url, fresh_sandbox.api_key, retry=FAST, max_requests_per_minute=120,
            rate_path=str(tmp_path / "rate"),
        ) as codat:
            companies = await codat.list_companies()
            started = time.monotonic()
            await asyncio.gather(*(codat.get_sync_settings(c.id) for c in companies[:7]))
            return time.monotonic() - started, codat

    elapsed, codat = asyncio.run(run())
    # the listing took the first slot: the 7 settings reads wait 0.5 s each behind it
    assert elapsed >= 3.0 - 0.05
    assert codat.requests_sent == 8


def test_requests_sent_counts_retries_and_matches_what_the_sandbox_saw(fresh_sandbox, tmp_path):
    with sandbox_client(fresh_sandbox) as http:
        http.post("/_sandbox/faults", json={"rate_5xx": 0.5, "seed": 11}).raise_for_status()
    clear_requests(fresh_sandbox)

    async def run():
        async with CodatClient(fresh_sandbox.base_url, fresh_sandbox.api_key, retry=FAST) as codat:
            companies = await codat.list_companies()
            await asyncio.gather(*(codat.get_sync_settings(c.id) for c in companies))
            return codat, len(companies)

    codat, companies = asyncio.run(run())
    seen = sandbox_total(fresh_sandbox)
    assert codat.requests_sent == seen > companies + 1  # retries sent, and counted
    # every request but the listing's (and its retries) names a company
    assert companies <= sum(codat.requests_by_company.values()) < seen
    assert len(codat.requests_by_company) == companies


def _reserve_many(path: str, count: int) -> float:
    limiter = RateLimiter(600, path)
    waits = [limiter.reserve() for _ in range(count)]
    return max(waits)


def test_processes_share_one_schedule(tmp_path):
    """Two processes each taking 5 slots at 600 a minute: 10 slots 0.1 s apart, the last ~0.9 s out."""
    path = str(tmp_path / "rate")
    with ProcessPoolExecutor(2) as pool:
        waits = list(pool.map(_reserve_many, [path, path], [5, 5]))
    assert max(waits) >= 0.9 - 0.2


def test_no_cap_never_waits_and_a_negative_cap_is_refused(tmp_path):
    assert RateLimiter(0, tmp_path / "rate").reserve() == 0.0
    with pytest.raises(ValueError, match="got -1"):
        RateLimiter(-1, tmp_path / "rate")


def test_the_setting_defaults_to_500_and_zero_lifts_it(monkeypatch):
    monkeypatch.delenv("CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE")
    assert Settings(_env_file=None).codat_max_requests_per_minute == 500
    monkeypatch.setenv("CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE", "0")
    assert Settings(_env_file=None).codat_max_requests_per_minute == 0
