"""The async Codat client: the core's only door to Codat.

One `httpx.AsyncClient` (pooled, with timeouts), Codat's Basic key header, a bound on concurrent requests,
retries with backoff honouring `Retry-After`, page helpers and typed endpoint methods. Every failure is a
`CodatError`; the API key is held in a `SecretStr` and never appears in a log line, exception or repr.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, TypeAdapter

from consent_lifecycle.codat import network
from consent_lifecycle.codat.auth import CodatKeyAuth
from consent_lifecycle.codat.errors import CodatError
from consent_lifecycle.codat.models import (
    Company,
    CompanySyncSettings,
    Connection,
    DataStatus,
    Page,
    PullOperation,
    SyncSetting,
)
from consent_lifecycle.codat.ratelimit import RateLimiter, default_path
from consent_lifecycle.codat.responses import (
    check_page,
    company_dicts,
    error_from,
    parse_model,
    parse_with,
)
from consent_lifecycle.codat.retry import (
    NOT_PROCESSED_STATUSES,
    RetryPolicy,
    outcome_unknown,
    parse_retry_after,
)

log = logging.getLogger("consent_lifecycle.codat")

M = TypeVar("M", bound=BaseModel)

MAX_PAGE_SIZE = 5000
#: in Codat's 400 answer to a queue request for a data type whose pull is still running
ALREADY_IN_PROGRESS = "AlreadyInProgress"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})
_DATA_STATUSES = TypeAdapter(dict[str, DataStatus | None])


class CodatClient:
    """Talk to Codat (or the sandbox) at `base_url` with `api_key`.

    Use as `async with CodatClient(...) as codat:`. `max_concurrency` bounds requests in flight across all
    callers of this client (Codat allows 10 concurrent per company); waits between retries hold no slot.
    `max_requests_per_minute` (0: no cap) spaces every request sent, retries included, on a schedule shared
    by every client of this machine with the same `rate_path` (default: one per base URL; see
    `consent_lifecycle.codat.ratelimit`: threads and processes of one machine share it, machines do not).
    `requests_sent` counts the HTTP requests this client sent (retries included), `requests_by_company`
    the same by the company id in their path.
    """

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | str,
        *,
        max_concurrency: int = 10,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        page_size: int = MAX_PAGE_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        max_requests_per_minute: int = 0,
        rate_path: str | None = None,
    ) -> None:
        if not isinstance(api_key, SecretStr):
            api_key = SecretStr(api_key)
        if not api_key.get_secret_value():
            raise ValueError("Codat API key is empty: set CONSENT_CODAT_API_KEY")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(max_concurrency)
        self.limiter = RateLimiter(max_requests_per_minute, rate_path or default_path(self.base_url))
        self.requests_sent = 0
        self.requests_by_company: Counter[str] = Counter()
        #: monotonic time before which no request is sent: Codat answered 429 with Retry-After
        self._resume_at = 0.0
        # what `verify=True` builds for each client (certifi, or SSL_CERT_FILE/SSL_CERT_DIR), built once
        tls = httpx.create_ssl_context() if transport is None else True

        def http_client(connections: int) -> httpx.AsyncClient:
            client = httpx.AsyncClient(
                verify=tls,
                base_url=self.base_url,
                auth=CodatKeyAuth(api_key),
                timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
                limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                headers={"Accept": "application/json", "User-Agent": "consent-lifecycle"},
                transport=transport,
            )
            network.install(client)  # a cheaper idle-connection check (see consent_lifecycle.codat.network)
            return client

        # One pool of one connection per slot, not one pool of `max_concurrency` connections: httpcore scans
        # every connection of a pool (and asks each idle socket whether it is readable) on each request's
        # start and end, which at hundreds of requests a second cost more CPU than the request itself. A
        # request takes a free pool when it takes a slot, so it never waits inside httpx. A transport given
        # by the caller is one pool already: then one client serves every slot.
        if transport is None:
            self._clients = [http_client(1) for _ in range(max_concurrency)]
        else:
            self._clients = [http_client(max_concurrency)]
        self._http = self._clients[0]
        self._free = [self._clients[i % len(self._clients)] for i in range(max_concurrency)]

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> CodatClient:
        if settings.codat_api_key is None:
            raise ValueError("CONSENT_CODAT_API_KEY is not set")
        options = {
            "max_concurrency": settings.codat_max_concurrency,
            "timeout": settings.codat_timeout_seconds,
            "max_requests_per_minute": settings.codat_max_requests_per_minute,
        }
        return cls(settings.codat_base_url, settings.codat_api_key, **(options | overrides))

    def __repr__(self) -> str:
        return f"CodatClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    # -- transport ---------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one call, retrying what Codat's policy retries; return a 2xx response or raise CodatError.

        A non-idempotent call (POST by default) is resent only when the failure proves it was not acted on
        (429, or no connection made); an idempotent one also after timeouts and 5xx. A 429 with Retry-After
        pauses the whole client until then (every waiting call, not only this one) and does not count as a
        failed attempt: being told to wait is not failing, so a long queue behind a low rate limit loses
        nothing; it is bounded by the policy's `max_elapsed` alone.
        """
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        started = time.monotonic()
        attempt = tries = 0  # failed attempts (what the policy bounds), and requests sent
        while True:
            attempt += 1
            tries += 1
            retry_after: float | None = None
            if (paused := self._resume_at - time.monotonic()) > 0:
                await asyncio.sleep(paused)
            if (spaced := self.limiter.reserve()) > 0:
                await asyncio.sleep(spaced)
            try:
                async with self._slots:
                    http = self._free.pop()
                    self._count(path)
                    try:
                        response = await http.request(method, path, params=params, json=json)
                    finally:
                        self._free.append(http)
            except httpx.TransportError as exc:
                not_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                failure = CodatError(
                    f"{type(exc).__name__}: Codat did not answer", method=method, path=path
                )
                if not (safe or not_sent):
                    raise failure from exc
                last_error: CodatError = failure
                cause: BaseException = exc
            else:
                if response.is_success:
                    return response
                last_error = error_from(response, method, path)
                cause = last_error
                retryable = response.status_code in self.retry.statuses
                if not retryable or not (safe or response.status_code in NOT_PROCESSED_STATUSES):
                    raise last_error
                retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
            wait = self.retry.wait(attempt, retry_after, self._rng)
            elapsed = time.monotonic() - started
            told_to_wait = last_error.status_code == 429 and retry_after is not None
            if told_to_wait:
                self._resume_at = max(self._resume_at, time.monotonic() + wait)
                attempt -= 1
            if attempt >= self.retry.max_attempts or elapsed + wait > self.retry.max_elapsed:
                raise CodatError(
                    f"gave up after {tries} attempts: {last_error.error}",
                    status_code=last_error.status_code,
                    correlation_id=last_error.correlation_id,
                    method=method,
                    path=path,
                ) from cause
            log.warning(
                "Codat %s %s failed (%s); retry %d in %.2fs",
                method, path, last_error.status_code or last_error.error, tries, wait,
            )
            await asyncio.sleep(wait)

    def _count(self, path: str) -> None:
        self.requests_sent += 1
        parts = path.split("/", 3)  # "", "companies", id, rest
        if len(parts) > 2 and parts[1] == "companies" and parts[2]:
            self.requests_by_company[parts[2]] += 1

    async def _get(self, path: str, model: type[M], params: Mapping[str, Any] | None = None) -> M:
        response = await self.request("GET", path, params=params)
        return parse_model(response, model, "GET", path)

    # -- paging ------------------------------------------------------------------------------------

    async def get_page(
        self,
        path: str,
        model: type[M],
        page: int,
        *,
        page_size: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Page[M]:
        size = page_size or self.page_size
        query = {**(params or {}), "page": page, "pageSize": size}
        response = await self.request("GET", path, params=_drop_none(query))
        parsed = parse_model(response, Page[model], "GET", path)  # type: ignore[valid-type]
        check_page(parsed, page, size, "GET", path)
        return parsed

    async def iter_pages(
        self,
        path: str,
        model: type[M],
        *,
        page_size: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Page[M]]:
        """Pages one after another, from page 1 until `totalResults` is covered."""
        number = 1
        while True:
            page = await self.get_page(path, model, number, page_size=page_size, params=params)
            yield page
            if number >= page.page_count:
                return
            number += 1

    async def list_all(
        self,
        path: str,
        model: type[M],
        *,
        page_size: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[M]:
        """Every item: page 1 first (for `totalResults`), then the other pages concurrently, in order."""
        first = await self.get_page(path, model, 1, page_size=page_size, params=params)
        rest = await asyncio.gather(
            *(
                self.get_page(path, model, number, page_size=page_size, params=params)
                for number in range(2, first.page_count + 1)
            )
        )
        items = [item for page in (first, *rest) for item in page.results]
        totals = {page.total_results for page in rest}
        if totals - {first.total_results}:
            raise CodatError(
                f"totalResults changed while paging ({first.total_results} then {sorted(totals)}); retry the scan",
                method="GET",
                path=path,
            )
        return items

    # -- companies ---------------------------------------------------------------------------------

    async def list_companies(self, *, query: str | None = None, tags: str | None = None) -> list[Company]:
        return await self.list_all("/companies", Company, params=_drop_none({"query": query, "tags": tags}))

    async def get_companies_page(
        self, page: int, *, page_size: int | None = None, query: str | None = None
    ) -> Page[Company]:
        return await self.get_page("/companies", Company, page, page_size=page_size, params={"query": query})

    async def company_pages_as_dicts(
        self, numbers: Sequence[int], *, page_size: int | None = None
    ) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
        """(page number, its companies) for each of `numbers`, yielded as each page arrives (not in order):
        every page is in flight at once within the client's bound, so the caller works on one page while
        the next downloads. Companies are plain dicts with Codat's camelCase keys, canonical ids and times
        as ISO 8601 UTC text (what `Company` holds, without building models).

        A page is parsed (in a worker thread, while other pages keep arriving) when the caller asks for
        it, so pages waiting for the caller are held as their bodies, not as objects. Each page is checked
        as `get_companies_page` checks it, with the same errors: pydantic-core checks the body in one pass
        against `LeanCompanyPage`, and a body that fails that (or holds ids or times in another form) is
        parsed as `Page[Company]`, which normalises it or says exactly what is wrong. Leaving early (or a
        failed page) cancels the pages still in flight."""
        size = page_size or self.page_size

        async def fetch(number: int) -> tuple[int, httpx.Response]:
            return number, await self.request("GET", "/companies", params={"page": number, "pageSize": size})

        async def parse(arrived: Awaitable[tuple[int, httpx.Response]]) -> tuple[int, list[dict[str, Any]]]:
            number, response = await arrived
            return number, await asyncio.to_thread(company_dicts, response, number, size)

        in_flight = [asyncio.ensure_future(fetch(number)) for number in numbers]
        try:
            for arrived in asyncio.as_completed(in_flight):
                # let go of fetches already handed over, so their bodies are not kept to the end
                in_flight = [task for task in in_flight if not task.done()]
                yield await parse(arrived)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def get_company(self, company_id: str) -> Company:
        return await self._get(f"/companies/{_seg(company_id)}", Company)

    async def create_company(
        self, name: str, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> Company:
        body = _drop_none({"name": name, "description": description, "tags": dict(tags) if tags else None})
        response = await self.request("POST", "/companies", json=body)
        return parse_model(response, Company, "POST", "/companies")

    async def delete_company(self, company_id: str) -> None:
        await self.request("DELETE", f"/companies/{_seg(company_id)}")

    # -- connections -------------------------------------------------------------------------------

    async def list_connections(self, company_id: str, *, query: str | None = None) -> list[Connection]:
        path = f"/companies/{_seg(company_id)}/connections"
        return await self.list_all(path, Connection, params=_drop_none({"query": query}))

    async def get_connection(self, company_id: str, connection_id: str) -> Connection:
        return await self._get(f"/companies/{_seg(company_id)}/connections/{_seg(connection_id)}", Connection)

    async def create_connection(self, company_id: str, platform_key: str) -> Connection:
        path = f"/companies/{_seg(company_id)}/connections"
        response = await self.request("POST", path, json={"platformKey": platform_key})
        return parse_model(response, Connection, "POST", path)

    async def unlink_connection(self, company_id: str, connection_id: str) -> Connection:
        path = f"/companies/{_seg(company_id)}/connections/{_seg(connection_id)}"
        response = await self.request("PATCH", path, json={"status": "Unlinked"})
        return parse_model(response, Connection, "PATCH", path)

    async def delete_connection(self, company_id: str, connection_id: str) -> int:
        """Delete a connection and the data Codat holds for it; returns the HTTP status (200)."""
        path = f"/companies/{_seg(company_id)}/connections/{_seg(connection_id)}"
        response = await self.request("DELETE", path)
        return response.status_code

    # -- sync settings, data status, pulls ---------------------------------------------------------

    async def get_sync_settings(self, company_id: str) -> CompanySyncSettings:
        return await self._get(f"/companies/{_seg(company_id)}/syncSettings", CompanySyncSettings)

    async def set_sync_settings(
        self, company_id: str, settings: Sequence[SyncSetting], *, overrides_defaults: bool = True
    ) -> None:
        body = CompanySyncSettings(
            company_id=company_id, settings=list(settings), overrides_defaults=overrides_defaults
        )
        await self.request(
            "POST", f"/companies/{_seg(company_id)}/syncSettings", json=body.to_codat(), idempotent=True
        )

    async def get_data_status(self, company_id: str) -> dict[str, DataStatus]:
        path = f"/companies/{_seg(company_id)}/dataStatus"
        response = await self.request("GET", path)
        statuses = parse_with(response, _DATA_STATUSES, "GET", path)
        return {key: value for key, value in statuses.items() if value is not None}

    async def refresh_all(self, company_id: str) -> None:
        await self.request("POST", f"/companies/{_seg(company_id)}/data/all", idempotent=True)

    async def queue_data_type(
        self, company_id: str, data_type: str, *, connection_id: str | None = None
    ) -> PullOperation:
        """Queue a pull; resent on failure only when Codat surely did not act (a second queue of a type
        already in progress is refused by Codat, so a duplicate cannot start a second pull)."""
        path = f"/companies/{_seg(company_id)}/data/queue/{_seg(data_type)}"
        response = await self.request("POST", path, params=_drop_none({"connectionId": connection_id}))
        return parse_model(response, PullOperation, "POST", path)

    async def queue_pull_once(self, company_id: str, data_type: str, *, connection_id: str) -> bool:
        """Queue one pull of `data_type` on the connection, at most once: True if this call queued it, False
        if one was already in progress. `queue_data_type` resends only when Codat surely did not act (429,
        no connection); after an answer that leaves it unknown (5xx, 408, a timeout once sent) it is resent
        here: Codat refuses a second pull of a type in progress, so the resend cannot start a second one,
        and its refusal then means the unknown attempt did queue it."""
        unknown = False
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                await self.queue_data_type(company_id, data_type, connection_id=connection_id)
            except CodatError as exc:
                if exc.status_code == 400 and ALREADY_IN_PROGRESS in str(exc):
                    return unknown
                if attempt == self.retry.max_attempts or not outcome_unknown(exc):
                    raise
                unknown = True
                await asyncio.sleep(self.retry.backoff(attempt, self._rng))
            else:
                return True
        raise AssertionError("unreachable")  # pragma: no cover

    async def list_pull_operations(
        self, company_id: str, *, query: str | None = None, order_by: str | None = None, page_size: int = 5000
    ) -> list[PullOperation]:
        path = f"/companies/{_seg(company_id)}/data/history"
        params = _drop_none({"query": query, "orderBy": order_by})
        return await self.list_all(path, PullOperation, page_size=page_size, params=params)

    async def get_pull_operation(self, company_id: str, dataset_id: str) -> PullOperation:
        return await self._get(f"/companies/{_seg(company_id)}/data/history/{_seg(dataset_id)}", PullOperation)


# -- helpers ---------------------------------------------------------------------------------------


def _seg(value: str) -> str:
    """One path segment, escaped so an id can never change the path."""
    return quote(str(value), safe="")


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
