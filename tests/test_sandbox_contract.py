"""Every operation the sandbox serves, called over real HTTP and checked against the real Codat spec."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.fixtures_sandbox import sandbox_client
from tests.openapi_spec import schema_ref, validate, validate_request_body, validate_response

MISSING = "00000000-0000-4000-8000-000000000000"


def call(
    client: httpx.Client,
    method: str,
    template: str,
    *,
    expect: int,
    params: dict | None = None,
    json: Any = None,
    undeclared_error: bool = False,
    **path: str,
) -> httpx.Response:
    """Send `method template`, assert the status and validate the body against the spec."""
    url = template.format(**path)
    response = client.request(method, url, params=params, json=json)
    assert response.status_code == expect, f"{method} {url}: {response.status_code} {response.text[:500]}"
    body = response.json() if response.content else None
    validate_response(method, template, response.status_code, body, allow_undeclared_error=undeclared_error)
    return response


def first_company(client: httpx.Client) -> dict[str, Any]:
    return client.get("/companies", params={"pageSize": 1}).json()["results"][0]


def company_with(client: httpx.Client, source_type: str, status: str = "Linked") -> tuple[dict, dict]:
    for company in client.get("/companies", params={"pageSize": 100}).json()["results"]:
        for conn in company["dataConnections"]:
            if conn["sourceType"] == source_type and conn["status"] == status:
                return company, conn
    raise AssertionError(f"no seeded {status} {source_type} connection")


# -- companies ---------------------------------------------------------------------------------------------


def test_list_companies(sandbox_http: httpx.Client) -> None:
    body = call(sandbox_http, "GET", "/companies", expect=200, params={"page": 2, "pageSize": 5}).json()
    assert body["pageNumber"] == 2 and len(body["results"]) == 5
    assert {"self", "current", "next", "previous"} <= set(body["_links"])
    call(
        sandbox_http,
        "GET",
        "/companies",
        expect=200,
        params={"query": "name~a && created>2020-01-01", "orderBy": "-name", "tags": "region = uk"},
    )


def test_list_companies_bad_query_and_paging(sandbox_http: httpx.Client) -> None:
    for params in (
        {"query": "nosuchfield=1"},
        {"query": "name="},
        {"pageSize": 5001},
        {"page": 0},
        {"orderBy": "colour"},
        {"tags": "region ? uk"},
    ):
        call(sandbox_http, "GET", "/companies", expect=400, params=params)


def test_create_get_replace_update_delete_company(sandbox_http: httpx.Client) -> None:
    request = {"name": "Bank of Dave", "description": "contract test", "tags": {"region": "uk"}}
    validate_request_body("POST", "/companies", request)
    created = call(sandbox_http, "POST", "/companies", expect=200, json=request).json()
    cid = created["id"]
    assert created["dataConnections"] == [] and created["redirect"].endswith(cid)
    call(sandbox_http, "GET", "/companies/{companyId}", expect=200, companyId=cid)
    replaced = call(
        sandbox_http,
        "PUT",
        "/companies/{companyId}",
        expect=200,
        companyId=cid,
        json={"name": "Bank of Dave Two"},
    ).json()
    assert replaced["description"] is None and replaced["tags"] == {}
    updated = call(
        sandbox_http,
        "PATCH",
        "/companies/{companyId}",
        expect=200,
        companyId=cid,
        json={"description": "patched"},
    ).json()
    assert updated["name"] == "Bank of Dave Two" and updated["description"] == "patched"
    call(sandbox_http, "DELETE", "/companies/{companyId}", expect=204, companyId=cid)
    call(sandbox_http, "GET", "/companies/{companyId}", expect=404, companyId=cid)
    call(sandbox_http, "DELETE", "/companies/{companyId}", expect=404, companyId=cid)


def test_create_company_bad_body(sandbox_http: httpx.Client) -> None:
    body = call(sandbox_http, "POST", "/companies", expect=400, json={"description": "no name"}).json()
    assert body["validation"]["errors"][0]["itemId"] == "name"


def test_company_not_found(sandbox_http: httpx.Client) -> None:
    for template in (
        "/companies/{companyId}",
        "/companies/{companyId}/connections",
        "/companies/{companyId}/syncSettings",
        "/companies/{companyId}/dataStatus",
        "/companies/{companyId}/data/history",
    ):
        call(sandbox_http, "GET", template, expect=404, companyId=MISSING)
    call(sandbox_http, "PUT", "/companies/{companyId}", expect=404, companyId=MISSING, json={"name": "x"})
    call(sandbox_http, "PATCH", "/companies/{companyId}", expect=404, companyId=MISSING, json={"name": "x"})
    call(sandbox_http, "POST", "/companies/{companyId}/data/all", expect=404, companyId=MISSING)
    call(
        sandbox_http,
        "POST",
        "/companies/{companyId}/connections",
        expect=404,
        companyId=MISSING,
        json={"platformKey": "gbol"},
    )


# -- connections -------------------------------------------------------------------------------------------


def test_list_and_get_connections(sandbox_http: httpx.Client) -> None:
    company = first_company(sandbox_http)
    cid = company["id"]
    body = call(
        sandbox_http,
        "GET",
        "/companies/{companyId}/connections",
        expect=200,
        companyId=cid,
        params={"pageSize": 2, "orderBy": "-created"},
    ).json()
    assert body["totalResults"] == len(company["dataConnections"])
    conn = company["dataConnections"][0]
    got = call(
        sandbox_http,
        "GET",
        "/companies/{companyId}/connections/{connectionId}",
        expect=200,
        companyId=cid,
        connectionId=conn["id"],
    ).json()
    assert got == conn
    call(
        sandbox_http,
        "GET",
        "/companies/{companyId}/connections",
        expect=400,
        companyId=cid,
        params={"query": "isCompleted=true"},
    )
    call(
        sandbox_http,
        "GET",
        "/companies/{companyId}/connections/{connectionId}",
        expect=404,
        companyId=cid,
        connectionId=MISSING,
    )


def test_create_unlink_delete_connection(sandbox_http: httpx.Client) -> None:
    cid = first_company(sandbox_http)["id"]
    validate_request_body("POST", "/companies/{companyId}/connections", {"platformKey": "gbol"})
    created = call(
        sandbox_http,
        "POST",
        "/companies/{companyId}/connections",
        expect=200,
        companyId=cid,
        json={"platformKey": "upvr"},
    ).json()
    assert created["status"] == "PendingAuth" and created["sourceType"] == "Banking"
    assert (
        created["linkUrl"] == f"https://link-api.codat.io/companies/{cid}/connections/{created['id']}/start"
    )
    # Only Linked connections can be unlinked (400 is not declared for this operation: ErrorMessage body).
    validate_request_body(
        "PATCH", "/companies/{companyId}/connections/{connectionId}", {"status": "Unlinked"}
    )
    call(
        sandbox_http,
        "PATCH",
        "/companies/{companyId}/connections/{connectionId}",
        expect=400,
        companyId=cid,
        connectionId=created["id"],
        json={"status": "Unlinked"},
        undeclared_error=True,
    )
    sandbox_http.post(f"/_sandbox/connections/{created['id']}/reconnect").raise_for_status()
    unlinked = call(
        sandbox_http,
        "PATCH",
        "/companies/{companyId}/connections/{connectionId}",
        expect=200,
        companyId=cid,
        connectionId=created["id"],
        json={"status": "Unlinked"},
    ).json()
    assert unlinked["status"] == "Unlinked"
    response = call(
        sandbox_http,
        "DELETE",
        "/companies/{companyId}/connections/{connectionId}",
        expect=200,
        companyId=cid,
        connectionId=created["id"],
    )
    assert response.content == b""
    call(
        sandbox_http,
        "GET",
        "/companies/{companyId}/connections/{connectionId}",
        expect=404,
        companyId=cid,
        connectionId=created["id"],
    )
    call(
        sandbox_http,
        "DELETE",
        "/companies/{companyId}/connections/{connectionId}",
        expect=404,
        companyId=cid,
        connectionId=created["id"],
    )
    call(
        sandbox_http,
        "PATCH",
        "/companies/{companyId}/connections/{connectionId}",
        expect=404,
        companyId=cid,
        connectionId=created["id"],
        json={"status": "Unlinked"},
    )


def test_create_connection_unknown_platform(sandbox_http: httpx.Client) -> None:
    cid = first_company(sandbox_http)["id"]
    # 400 is not declared for create-connection; the body is still Codat's ErrorMessage.
    body = call(
        sandbox_http,
        "POST",
        "/companies/{companyId}/connections",
        expect=400,
        companyId=cid,
        json={"platformKey": "zzzz"},
        undeclared_error=True,
    ).json()
    assert "zzzz" in body["error"]


# -- sync settings, data status, refresh, pull history ----------------------------------------------------


def test_company_sync_settings(sandbox_http: httpx.Client) -> None:
    cid = first_company(sandbox_http)["id"]
    current = call(
        sandbox_http, "GET", "/companies/{companyId}/syncSettings", expect=200, companyId=cid
    ).json()
    assert current["companyId"] == cid and current["settings"]
    request = {
        "companyId": cid,
        "overridesDefaults": True,
        "settings": [
            {"dataType": "invoices", "fetchOnFirstLink": True, "syncSchedule": 24, "syncOrder": 0},
            {
                "dataType": "banking-transactions",
                "fetchOnFirstLink": False,
                "syncSchedule": 24,
                "syncOrder": 1,
                "syncFromWindow": 12,
            },
        ],
    }
    validate_request_body("POST", "/companies/{companyId}/syncSettings", request)
    call(sandbox_http, "POST", "/companies/{companyId}/syncSettings", expect=204, companyId=cid, json=request)
    after = call(sandbox_http, "GET", "/companies/{companyId}/syncSettings", expect=200, companyId=cid).json()
    assert after == request
    bad = {**request, "settings": [{**request["settings"][0], "dataType": "notAType"}]}
    body = call(
        sandbox_http, "POST", "/companies/{companyId}/syncSettings", expect=400, companyId=cid, json=bad
    ).json()
    assert "notAType" in body["error"]
    call(
        sandbox_http,
        "POST",
        "/companies/{companyId}/syncSettings",
        expect=400,
        companyId=cid,
        json={**request, "companyId": MISSING},
    )
    call(
        sandbox_http,
        "POST",
        "/companies/{companyId}/syncSettings",
        expect=404,
        companyId=MISSING,
        json={**request, "companyId": MISSING},
    )


def test_data_status_refresh_and_history(sandbox_http: httpx.Client) -> None:
    company, conn = company_with(sandbox_http, "Accounting")
    cid = company["id"]
    status = call(sandbox_http, "GET", "/companies/{companyId}/dataStatus", expect=200, companyId=cid).json()
    assert status, "a seeded company with a Linked connection has pull history"
    pull = call(
        sandbox_http,
        "POST",
        "/companies/{companyId}/data/queue/{dataType}",
        expect=200,
        companyId=cid,
        dataType="taxRates",
        params={"connectionId": conn["id"]},
    ).json()
    assert pull["status"] in ("Queued", "Fetching") and not pull["isCompleted"]
    call(sandbox_http, "POST", "/companies/{companyId}/data/all", expect=204, companyId=cid)
    call(
        sandbox_http,
        "POST",
        "/companies/{companyId}/data/queue/{dataType}",
        expect=400,
        companyId=cid,
        dataType="taxRates",
        params={"connectionId": conn["id"]},
    )
    call(
        sandbox_http,
        "POST",
        "/companies/{companyId}/data/queue/{dataType}",
        expect=400,
        companyId=cid,
        dataType="notAType",
    )
    call(
        sandbox_http,
        "POST",
        "/companies/{companyId}/data/queue/{dataType}",
        expect=404,
        companyId=cid,
        dataType="invoices",
        params={"connectionId": MISSING},
    )
    history = call(
        sandbox_http,
        "GET",
        "/companies/{companyId}/data/history",
        expect=200,
        companyId=cid,
        params={
            "pageSize": 100,
            "orderBy": "-requested",
            "query": "{status=Queued||status=Fetching}&&dataType=taxRates",
        },
    ).json()
    assert pull["id"] in [p["id"] for p in history["results"]]
    call(
        sandbox_http,
        "GET",
        "/companies/{companyId}/data/history/{datasetId}",
        expect=200,
        companyId=cid,
        datasetId=pull["id"],
    )
    call(
        sandbox_http,
        "GET",
        "/companies/{companyId}/data/history/{datasetId}",
        expect=404,
        companyId=cid,
        datasetId=MISSING,
    )
    call(
        sandbox_http,
        "GET",
        "/companies/{companyId}/data/history",
        expect=400,
        companyId=cid,
        params={"query": "isCompleted=true"},
    )
    sandbox_http.post("/_sandbox/clock/advance", json={"seconds": 120}).raise_for_status()
    done = call(
        sandbox_http,
        "GET",
        "/companies/{companyId}/data/history/{datasetId}",
        expect=200,
        companyId=cid,
        datasetId=pull["id"],
    ).json()
    assert done["status"] == "Complete" and "completed" in done
    call(sandbox_http, "GET", "/companies/{companyId}/dataStatus", expect=200, companyId=cid)


# -- errors on every operation -----------------------------------------------------------------------------

OPERATIONS = [
    ("GET", "/companies", None),
    ("POST", "/companies", {"name": "x"}),
    ("GET", "/companies/{companyId}", None),
    ("PUT", "/companies/{companyId}", {"name": "x"}),
    ("PATCH", "/companies/{companyId}", {"name": "x"}),
    ("DELETE", "/companies/{companyId}", None),
    ("GET", "/companies/{companyId}/connections", None),
    ("POST", "/companies/{companyId}/connections", {"platformKey": "gbol"}),
    ("GET", "/companies/{companyId}/connections/{connectionId}", None),
    ("PATCH", "/companies/{companyId}/connections/{connectionId}", {"status": "Unlinked"}),
    ("DELETE", "/companies/{companyId}/connections/{connectionId}", None),
    ("GET", "/companies/{companyId}/syncSettings", None),
    (
        "POST",
        "/companies/{companyId}/syncSettings",
        {"companyId": MISSING, "settings": [], "overridesDefaults": True},
    ),
    ("GET", "/companies/{companyId}/dataStatus", None),
    ("POST", "/companies/{companyId}/data/all", None),
    ("POST", "/companies/{companyId}/data/queue/{dataType}", None),
    ("GET", "/companies/{companyId}/data/history", None),
    ("GET", "/companies/{companyId}/data/history/{datasetId}", None),
]
_IDS = {"companyId": MISSING, "connectionId": MISSING, "datasetId": MISSING, "dataType": "invoices"}


@pytest.mark.parametrize("wrong_header", [None, "Basic d3Jvbmc=", "Bearer sandbox-test-key-0123456789"])
def test_401_on_every_operation(sandbox, wrong_header: str | None) -> None:
    headers = {"Authorization": wrong_header} if wrong_header else {}
    with httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=10) as client:
        for method, template, body in OPERATIONS:
            response = client.request(method, template.format(**_IDS), json=body)
            assert response.status_code == 401, f"{method} {template}: {response.status_code}"
            validate_response(method, template, 401, response.json())
            assert sandbox.api_key not in response.text


def test_429_and_5xx_bodies_on_every_operation(fresh_sandbox) -> None:
    with sandbox_client(fresh_sandbox) as client:
        for fault, status in (
            ({"rate_429": 1.0, "retry_after_seconds": 2}, (429,)),
            ({"rate_5xx": 1.0, "seed": 3}, (500, 503)),
        ):
            client.post("/_sandbox/faults", json=fault).raise_for_status()
            for method, template, body in OPERATIONS:
                response = client.request(method, template.format(**_IDS), json=body)
                assert response.status_code in status, f"{method} {template}: {response.status_code}"
                validate_response(method, template, response.status_code, response.json())
                if response.status_code == 429:
                    assert response.headers["Retry-After"] == "2"
        client.post("/_sandbox/faults", json={}).raise_for_status()


def test_timeout_fault_504_body(fresh_sandbox) -> None:
    with sandbox_client(fresh_sandbox) as client:
        client.post("/_sandbox/faults", json={"rate_timeout": 1.0, "timeout_seconds": 0}).raise_for_status()
        # 504 is not declared by the spec (it lists 500 and 503); the body is still an ErrorMessage.
        call(client, "GET", "/companies", expect=504, undeclared_error=True)


def test_page_sizes_above_2000_meet_the_spec_own_inconsistency(sandbox_http: httpx.Client) -> None:
    """The spec allows `pageSize` up to 5000 but caps `PagingInfo.pageSize` at 2000: such a page is valid in
    every other respect."""
    body = sandbox_http.get("/companies", params={"pageSize": 2001}).json()
    with pytest.raises(AssertionError) as info:
        validate_response("GET", "/companies", 200, body)
    lines = [line for line in str(info.value).splitlines()[1:] if line.strip()]
    assert len(lines) == 1 and "$.pageSize" in lines[0] and "2000" in lines[0], str(info.value)
    validate_response("GET", "/companies", 200, {**body, "pageSize": 2000})


def test_rate_limit_429_body(fresh_sandbox) -> None:
    with sandbox_client(fresh_sandbox) as client:
        client.post("/_sandbox/limits", json={"rate_limit_per_minute": 1}).raise_for_status()
        call(client, "GET", "/companies", expect=200, params={"pageSize": 1})
        response = call(client, "GET", "/companies", expect=429)
        assert int(response.headers["Retry-After"]) >= 1


def test_unknown_route_and_method_use_codat_error_body(sandbox_http: httpx.Client) -> None:
    for method, url, status in (
        ("GET", "/nope", 404),
        ("GET", "/companies/x/y/z", 404),
        ("PUT", "/companies", 405),
    ):
        response = sandbox_http.request(method, url)
        assert response.status_code == status
        validate(schema_ref("ErrorMessage"), response.json())
        assert response.json()["statusCode"] == status


# -- the validator itself ----------------------------------------------------------------------------------


def test_converted_spec_rejects_a_really_wrong_body() -> None:
    wrong_company = {
        "id": "not-a-uuid",
        "name": 42,
        "redirect": "no scheme here",
        "tags": {"k": 1},
        "dataConnections": [{"id": str(uuid.uuid4()), "status": "Expired", "surprise": True}],
    }
    with pytest.raises(AssertionError) as info:
        validate_response("GET", "/companies/{companyId}", 200, wrong_company)
    text = str(info.value)
    for fragment in ("not-a-uuid", "42", "Expired", "surprise"):
        assert fragment in text, text
    with pytest.raises(AssertionError):
        validate_response("GET", "/companies", 200, {"results": [], "pageNumber": 1})  # no _links etc.
    with pytest.raises(AssertionError):
        validate_response(
            "POST",
            "/companies/{companyId}/data/queue/{dataType}",
            200,
            {"id": str(uuid.uuid4()), "status": "Done", "progress": "half"},
        )
    with pytest.raises(AssertionError):
        validate_response("GET", "/companies", 401, {"statusCode": "401", "canBeRetried": False})
    with pytest.raises(AssertionError):
        validate_response("DELETE", "/companies/{companyId}", 204, {"unexpected": "body"})
    with pytest.raises(AssertionError):
        validate_response("GET", "/companies", 418, {})
    with pytest.raises(AssertionError):
        validate_request_body(
            "POST",
            "/companies/{companyId}/syncSettings",
            {"companyId": "x", "settings": [{"dataType": "nope"}]},
        )


def test_converted_spec_accepts_nulls_where_nullable() -> None:
    company = {
        "id": str(uuid.uuid4()),
        "name": "A",
        "redirect": "https://link.codat.io/company/a",
        "description": None,
        "lastSync": None,
        "createdByUserName": None,
        "referenceParentCompany": None,
        "dataConnections": [
            {
                "id": str(uuid.uuid4()),
                "integrationId": str(uuid.uuid4()),
                "sourceId": str(uuid.uuid4()),
                "platformName": "Xero",
                "linkUrl": "https://link-api.codat.io/x",
                "status": "Linked",
                "created": "2026-01-01T00:00:00Z",
                "sourceType": "Accounting",
                "lastSync": None,
                "dataConnectionErrors": None,
                "connectionInfo": None,
            }
        ],
    }
    validate_response("GET", "/companies/{companyId}", 200, company)
    validate_response("GET", "/companies/{companyId}/dataStatus", 200, {"invoices": None})
