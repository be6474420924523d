"""The sandbox stands in for Codat, so it answers no 5xx it was not told to inject: every operation it serves
is fuzzed from Codat's OpenAPI document (tests/openapi_requests.py) over real HTTP, and must answer below
500, every 4xx with Codat's error body (the spec's `ErrorMessage`, its statusCode the response's).

Each operation gets requests with every parameter and body drawn. Each parameter in Codat's query language
(`query`, `orderBy`, `tags`) and each request body also gets a run of its own on ids that exist, with more
examples: that is where the parsing is. Deterministic (derandomized, no example database) and bounded:
CONSENT_FUZZ_EXAMPLES examples per operation (25 by default, the suite's share: ~15 s in all on 2 idle
cores), LANGUAGE_FACTOR and BODY_FACTOR times that per focused run; `make soak` runs 16 times as many. A 5xx
fails with the sandbox's own traceback, taken from its log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codat_sandbox import SandboxHandle, api
from tests.fixtures_sandbox import reset_sandbox, sandbox_client
from tests.openapi_operations import Operation, body_schema, parameters
from tests.openapi_requests import LANGUAGES, Request, requests
from tests.openapi_spec import schema_ref, spec, validate

EXAMPLES = int(os.environ.get("CONSENT_FUZZ_EXAMPLES", "25"))
LANGUAGE_FACTOR = 12
BODY_FACTOR = 4


def sandbox_operations() -> list[Operation]:
    """Every Codat operation the sandbox routes (each must be in the spec: it is Codat's API)."""
    operations = [
        Operation(method, route.path)
        for route in api.router.routes
        for method in sorted(getattr(route, "methods", ()))
    ]
    for operation in operations:
        assert operation.method.lower() in spec()["paths"].get(operation.path, {}), f"{operation} not in spec"
    return operations


OPERATIONS = sandbox_operations()
FOCUSES = [  # what gets a run of its own: each parameter in Codat's query language, and each body
    *(
        (operation, p["name"])
        for operation in OPERATIONS
        for p in parameters(operation)
        if p["name"] in LANGUAGES
    ),
    *((operation, "body") for operation in OPERATIONS if body_schema(operation) is not None),
]


class _Tracebacks(logging.Handler):
    """The sandbox's error log records (it logs each unexpected exception with its traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        lines = logging.Formatter().format(record).splitlines()
        self.texts.append("\n".join(lines[:1] + lines[1:][-40:]))  # a RecursionError's is thousands long


@pytest.fixture
def sandbox_tracebacks() -> Iterator[list[str]]:
    handler = _Tracebacks()
    logger = logging.getLogger("codat_sandbox.app")
    logger.addHandler(handler)
    try:
        yield handler.texts
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def fuzz_client(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """One client for the module (each new one loads the CA bundle); the sandbox is reset after it."""
    with sandbox_client(sandbox) as client:
        yield client
        reset_sandbox(sandbox, client)


def id_pools(client: httpx.Client) -> dict[str, list[str]]:
    """Ids that exist in the freshly seeded sandbox, for path parameters: a few companies, their
    connections, and the first company's pull operations; and two product identifiers."""
    companies = client.get("/companies", params={"pageSize": 3}).json()["results"]
    first = companies[0]["id"]
    pulls = client.get(f"/companies/{first}/data/history", params={"pageSize": 5}).json()["results"]
    return {
        "companyId": [c["id"] for c in companies],
        "connectionId": [n["id"] for c in companies for n in c["dataConnections"]],
        "datasetId": [p["id"] for p in pulls],
        "productIdentifier": ["lending", "bank-feeds"],
    }


@pytest.fixture
def pools(sandbox: SandboxHandle, fuzz_client: httpx.Client) -> dict[str, list[str]]:
    """The sandbox reset to its seeded world, with a rate limit no run reaches; its id pools."""
    reset_sandbox(sandbox, fuzz_client)
    fuzz_client.post("/_sandbox/limits", json={"rate_limit_per_minute": 10_000_000}).raise_for_status()
    return id_pools(fuzz_client)


def check(request: Request, response: httpx.Response, tracebacks: list[str]) -> None:
    where = f"{request!r} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:300]}\n" + "\n".join(tracebacks)
    if response.status_code >= 400:
        assert response.headers.get("content-type", "").startswith("application/json"), where
        body = response.json()
        validate(schema_ref("ErrorMessage"), body, what=where)
        assert body.get("statusCode") == response.status_code and body.get("error"), f"{where}: {body}"


def fuzz(
    client: httpx.Client, strategy: st.SearchStrategy[Request], examples: int, tracebacks: list[str]
) -> None:
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(strategy)
    def run(request: Request) -> None:
        if request.operation.method != "GET":  # every example on the seeded world: replayable, so it shrinks
            client.post("/_sandbox/reset").raise_for_status()
        tracebacks.clear()
        response = client.request(
            request.operation.method,
            request.url,
            params=list(request.params),
            content=request.content,
            headers={"Content-Type": "application/json"} if request.content is not None else {},
        )
        check(request, response, tracebacks)

    run()


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
def test_fuzzed_requests_get_no_5xx_and_codat_error_bodies(
    operation: Operation, fuzz_client: httpx.Client, pools: dict[str, list[str]], sandbox_tracebacks
) -> None:
    fuzz(fuzz_client, requests(operation, pools), EXAMPLES, sandbox_tracebacks)


@pytest.mark.parametrize(("operation", "focus"), FOCUSES, ids=str)
def test_fuzzed_query_language_and_bodies_get_no_5xx_and_codat_error_bodies(
    operation: Operation,
    focus: str,
    fuzz_client: httpx.Client,
    pools: dict[str, list[str]],
    sandbox_tracebacks,
) -> None:
    examples = EXAMPLES * (LANGUAGE_FACTOR if focus in LANGUAGES else BODY_FACTOR)
    fuzz(fuzz_client, requests(operation, pools, focus=focus), examples, sandbox_tracebacks)
