"""The Codat client against the sandbox over real loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from consent_lifecycle.codat import CodatClient, CodatError, RetryPolicy
from consent_lifecycle.codat.models import SyncSetting
from consent_lifecycle.codat.retry import parse_retry_after
from tests.fixtures_sandbox import sandbox_client

FAST = RetryPolicy(initial_delay=0.01, max_delay=2.0, max_attempts=12)


def client_for(sandbox, **options) -> CodatClient:
    return CodatClient(sandbox.base_url, sandbox.api_key, **({"retry": FAST} | options))


def requests_seen(sandbox) -> dict:
    with sandbox_client(sandbox) as http:
        return http.get("/_sandbox/requests").json()


def set_faults(sandbox, **faults) -> None:
    with sandbox_client(sandbox) as http:
        http.post("/_sandbox/faults", json=faults).raise_for_status()


def test_pages_every_company_once_across_several_pages(fresh_sandbox):
    async def run():
        async with client_for(fresh_sandbox, page_size=3) as codat:
            concurrent = await codat.list_companies()
            sequential = [c async for page in codat.iter_pages("/companies", type(concurrent[0])) for c in page.results]
            return concurrent, sequential

    concurrent, sequential = asyncio.run(run())
    ids = [c.id for c in concurrent]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert ids == [c.id for c in sequential]
    assert requests_seen(fresh_sandbox)["counts"]["GET /companies"] == 2 * 7  # ceil(20 / 3) pages, twice


def test_companies_carry_their_connections(fresh_sandbox):
    companies = asyncio.run(_list(fresh_sandbox))
    assert all(sum(c.source_type == "Accounting" for c in company.data_connections) == 1 for company in companies)
    statuses = {conn.status for company in companies for conn in company.data_connections}
    assert "Linked" in statuses and len(statuses) > 1


async def _list(sandbox):
    async with client_for(sandbox) as codat:
        return await codat.list_companies()


def test_429_waits_for_retry_after_then_succeeds(fresh_sandbox):
    set_faults(fresh_sandbox, rate_429=0.5, retry_after_seconds=1, seed=3)
    started = datetime.now(UTC)
    companies = asyncio.run(_list_paged(fresh_sandbox, page_size=5))
    waited = (datetime.now(UTC) - started).total_seconds()
    seen = requests_seen(fresh_sandbox)["by_status"]["GET /companies"]
    assert len(companies) == 20
    assert seen.get("429", 0) >= 1
    # each 429 asked for 1 s; the client never came back sooner (behaviour, not a benchmark)
    assert waited >= 1.0


def test_being_told_to_wait_is_not_a_failed_attempt(fresh_sandbox):
    """Behind a low rate limit, calls wait out 429s (Retry-After) however many: only failures use up
    max_attempts, so no page is lost."""
    set_faults(fresh_sandbox, rate_429=0.5, retry_after_seconds=1, seed=3)
    one_try = RetryPolicy(initial_delay=0.01, max_attempts=1)

    companies = asyncio.run(_list_paged(fresh_sandbox, page_size=10, retry=one_try))

    assert len({c.id for c in companies}) == 20
    assert requests_seen(fresh_sandbox)["by_status"]["GET /companies"].get("429", 0) >= 1


async def _list_paged(sandbox, page_size, **options):
    async with client_for(sandbox, page_size=page_size, **options) as codat:
        return await codat.list_companies()


def test_5xx_is_retried_until_it_succeeds(fresh_sandbox):
    set_faults(fresh_sandbox, rate_5xx=0.5, seed=11)
    companies = asyncio.run(_list_paged(fresh_sandbox, page_size=2))
    by_status = requests_seen(fresh_sandbox)["by_status"]["GET /companies"]
    assert len({c.id for c in companies}) == 20
    assert sum(count for status, count in by_status.items() if status.startswith("5")) >= 1


def test_gives_up_with_the_last_error_after_max_attempts(fresh_sandbox):
    set_faults(fresh_sandbox, rate_5xx=1.0, seed=1)

    async def run():
        async with client_for(fresh_sandbox, retry=RetryPolicy(initial_delay=0.01, max_attempts=3)) as codat:
            await codat.list_companies()

    with pytest.raises(CodatError) as caught:
        asyncio.run(run())
    assert caught.value.status_code in {500, 503}
    assert "gave up after 3 attempts" in str(caught.value)
    assert requests_seen(fresh_sandbox)["counts"]["GET /companies"] == 3


def test_wrong_key_raises_401_once_without_leaking_it(fresh_sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-key-" + "x" * 20

    async def run():
        async with CodatClient(fresh_sandbox.base_url, wrong, retry=FAST) as codat:
            await codat.list_companies()

    with pytest.raises(CodatError) as caught:
        asyncio.run(run())
    error = caught.value
    assert error.status_code == 401 and error.correlation_id
    assert "GET /companies" in str(error)
    assert requests_seen(fresh_sandbox)["counts"]["GET /companies"] == 1
    for text in (str(error), repr(error), caplog.text):
        assert wrong not in text
        assert base64.b64encode(wrong.encode()).decode() not in text


def test_the_key_never_appears_in_logs_reprs_or_errors(fresh_sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    key = fresh_sandbox.api_key
    encoded = base64.b64encode(key.encode()).decode()
    set_faults(fresh_sandbox, rate_5xx=0.5, seed=11)
    errors: list[BaseException] = []

    async def run():
        async with client_for(fresh_sandbox, page_size=4) as codat:
            texts = [repr(codat), repr(codat._http.auth)]
            await codat.list_companies()
            try:
                await codat.get_company("00000000-0000-4000-8000-000000000000")
            except CodatError as exc:
                errors.append(exc)
            return texts

    texts = asyncio.run(run())
    assert errors and errors[0].status_code == 404
    assert "retry" in caplog.text  # the retries were logged...
    for text in [*texts, caplog.text, *(str(e) for e in errors), *(repr(e) for e in errors)]:
        assert key not in text and encoded not in text  # ...and the key was not


def test_sync_settings_round_trip_and_pull_queueing(fresh_sandbox):
    async def run():
        async with client_for(fresh_sandbox) as codat:
            company = next(c for c in await codat.list_companies() if any(
                conn.status == "Linked" and conn.source_type == "Accounting" for conn in c.data_connections))
            accounting = next(conn for conn in company.data_connections if conn.source_type == "Accounting")
            before = await codat.get_sync_settings(company.id)
            wanted = [SyncSetting(data_type="invoices", fetch_on_first_link=True, sync_schedule=24, sync_order=0)]
            await codat.set_sync_settings(company.id, wanted)
            after = await codat.get_sync_settings(company.id)
            pull = await codat.queue_data_type(company.id, "invoices", connection_id=accounting.id)
            again = await codat.get_pull_operation(company.id, pull.id)
            try:
                await codat.queue_data_type(company.id, "invoices", connection_id=accounting.id)
            except CodatError as exc:
                second = exc
            history = await codat.list_pull_operations(company.id, query=f"id={pull.id}")
            status = await codat.get_data_status(company.id)
            return before, after, pull, again, second, history, status

    before, after, pull, again, second, history, status = asyncio.run(run())
    assert len(before.settings) > 1
    assert [s.data_type for s in after.settings] == ["invoices"]
    assert pull.data_type == "invoices" and not pull.is_completed and again.id == pull.id
    assert second.status_code == 400 and "DatasetAlreadyInProgress" in second.error
    assert [p.id for p in history] == [pull.id]
    assert "invoices" in status


def test_a_timeout_is_retried_for_reads_but_not_for_a_create(fresh_sandbox):
    set_faults(fresh_sandbox, rate_timeout=1.0, timeout_seconds=1)

    async def create():
        async with client_for(fresh_sandbox, timeout=0.3) as codat:
            await codat.create_company("Timeout Ltd")

    with pytest.raises(CodatError) as caught:
        asyncio.run(create())
    assert "ReadTimeout" in str(caught.value)
    time.sleep(1.5)  # the sandbox counts a request when it answers: let the timed-out one finish
    assert requests_seen(fresh_sandbox)["counts"]["POST /companies"] == 1  # never sent twice

    set_faults(fresh_sandbox, rate_timeout=0.5, timeout_seconds=1, seed=2)
    companies = asyncio.run(_list_paged(fresh_sandbox, page_size=4, timeout=0.3))
    time.sleep(1.5)
    assert len(companies) == 20
    assert requests_seen(fresh_sandbox)["by_status"]["GET /companies"].get("504", 0) >= 1


def test_concurrency_bound_keeps_under_codats_per_company_limit(fresh_sandbox):
    with sandbox_client(fresh_sandbox) as http:
        http.post("/_sandbox/limits", json={"concurrent_per_company": 2}).raise_for_status()
    set_faults(fresh_sandbox, latency_ms=50)

    async def burst(max_concurrency):
        async with client_for(fresh_sandbox, max_concurrency=max_concurrency) as codat:
            company_id = (await codat.list_companies())[0].id
            await asyncio.gather(*(codat.get_company(company_id) for _ in range(12)))

    asyncio.run(burst(2))
    assert "429" not in requests_seen(fresh_sandbox)["by_status"]["GET /companies/{companyId}"]
    asyncio.run(burst(6))
    assert requests_seen(fresh_sandbox)["by_status"]["GET /companies/{companyId}"].get("429", 0) >= 1


# -- faults no real part can produce: a transport that answers with broken bodies ----------------


def _broken(body: bytes | str, status: int = 200, headers: dict | None = None) -> httpx.MockTransport:
    content = body.encode() if isinstance(body, str) else body
    return httpx.MockTransport(lambda request: httpx.Response(status, content=content, headers=headers or {}))


PAGE = '{"results": %s, "pageNumber": 1, "pageSize": 2, "totalResults": %d, "_links": {"self": {"href": "/companies"}, "current": {"href": "/companies"}}}'
COMPANY = '{"id": "5d9f4c1c-6bd9-4b5e-9ad4-0c56e3c1c6a0", "name": "A", "redirect": "https://link.codat.io/company/x", "dataConnections": [%s]}'
CONNECTION = '{"id": "6d9f4c1c-6bd9-4b5e-9ad4-0c56e3c1c6a0", "integrationId": "7d9f4c1c-6bd9-4b5e-9ad4-0c56e3c1c6a0", "sourceId": "8d9f4c1c-6bd9-4b5e-9ad4-0c56e3c1c6a0", "platformName": "Xero", "linkUrl": "https://x", "status": "%s", "created": "2026-01-01T00:00:00Z", "sourceType": "Accounting"}'


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("<html>bad gateway</html>", "not JSON"),
        (PAGE % ("[" + COMPANY % (CONNECTION % "Broken") + "]", 1), "'Broken'"),
        (PAGE % ('[{"name": "no id", "redirect": "https://x"}]', 1), "results.0.id"),
        (PAGE % ("[" + COMPANY % "" + "]", 2), "page 1 holds 1 results"),
    ],
    ids=["non-json", "wrong-enum", "missing-field", "truncated-page"],
)
def test_a_response_we_cannot_trust_is_a_clear_error(body, names):
    async def run():
        async with CodatClient("http://codat.invalid", "k", transport=_broken(body), retry=FAST) as codat:
            await codat.list_companies()

    with pytest.raises(CodatError) as caught:
        asyncio.run(run())
    assert names in str(caught.value)


def test_retry_after_as_seconds_or_http_date():
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Sun, 01 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after((now - timedelta(minutes=1)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_backoff_grows_and_is_capped():
    import random

    policy = RetryPolicy(initial_delay=0.5, exponent=1.5, max_delay=60, jitter=0)
    waits = [policy.wait(n, None, random.Random(0)) for n in range(1, 20)]
    assert waits[:3] == [0.5, 0.75, 1.125] and max(waits) == 60
    assert policy.wait(1, 5.0, random.Random(0)) >= 5.0  # Retry-After is a floor


# -- connections kept alive ---------------------------------------------------------------------------


def test_client_pools_use_the_socket_polling_check(fresh_sandbox):
    """The cheaper idle-connection check is installed on every pool (it pokes httpx's private attributes:
    an httpx or httpcore upgrade that moves them fails here, not silently in production)."""
    from consent_lifecycle.codat.network import SocketPollingBackend

    async def run():
        async with client_for(fresh_sandbox, max_concurrency=3) as codat:
            backends = [http._transport._pool._network_backend for http in codat._clients]
            await codat.get_sync_settings((await _list(fresh_sandbox))[0].id)
        return backends

    backends = asyncio.run(run())
    assert len(backends) == 3
    assert all(isinstance(backend, SocketPollingBackend) for backend in backends)


def test_a_kept_alive_connection_the_server_closed_is_not_reused():
    """A server that closes each connection after answering (without `Connection: close`): the next request
    sees the idle socket readable (EOF), opens a new connection and succeeds, three times out of three."""
    from consent_lifecycle.codat import network

    accepted = []

    async def answer_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async def run():
        server = await asyncio.start_server(answer_once_then_close, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert network.install(http) == 1
            statuses = []
            for _ in range(3):
                statuses.append((await http.get("/")).status_code)
                await asyncio.sleep(0.05)  # the server's FIN arrives while the connection is idle
            return statuses

    assert asyncio.run(run()) == [200, 200, 200]
    assert len(accepted) == 3
