"""Requests the fuzzer (test_sandbox_fuzz.py) found the sandbox answering 500, each kept as a plain case: the
sandbox must answer 400 with Codat's error body naming the bad parameter or value, as Codat would."""

from __future__ import annotations

import httpx

from tests.openapi_spec import schema_ref, validate


def first_company_id(client: httpx.Client) -> str:
    return client.get("/companies", params={"pageSize": 1}).json()["results"][0]["id"]


def bad_request(response: httpx.Response, *named: str) -> dict:
    """Assert a 400 with Codat's error body whose message names each of `named`; return the body."""
    assert response.status_code == 400, f"{response.status_code} {response.text[:300]}"
    body = response.json()
    validate(schema_ref("ErrorMessage"), body)
    assert body["statusCode"] == 400
    for name in named:
        assert name in body["error"], f"{name!r} not named in {body['error']!r}"
    return body


def test_a_body_nested_past_the_json_parsers_depth_is_400(sandbox_http: httpx.Client) -> None:
    cid = first_company_id(sandbox_http)
    deep = b"[" * 5000 + b"]" * 5000
    headers = {"Content-Type": "application/json"}
    for method, url in (
        ("POST", "/companies"),
        ("PUT", f"/companies/{cid}"),
        ("PATCH", f"/companies/{cid}"),
        ("POST", f"/companies/{cid}/connections"),
        ("POST", f"/companies/{cid}/syncSettings"),
    ):
        body = bad_request(
            sandbox_http.request(method, url, content=deep, headers=headers), "nested too deeply"
        )
        assert body["validation"]["errors"][0]["itemId"] == "body"
    assert sandbox_http.post("/_sandbox/clock", content=deep, headers=headers).status_code == 400


def test_braces_nested_past_a_limit_are_400_in_query_and_tags(sandbox_http: httpx.Client) -> None:
    cid = first_company_id(sandbox_http)
    deep = "{" * 1000 + "name=x" + "}" * 1000
    for url, parameter in (
        ("/companies", "query"),
        ("/companies", "tags"),
        (f"/companies/{cid}/connections", "query"),
        (f"/companies/{cid}/data/history", "query"),
    ):
        bad_request(sandbox_http.get(url, params={parameter: deep}), f"Error parsing {parameter}", "nested")
    shallow = "{" * 32 + "id!=00000000-0000-4000-8000-000000000000" + "}" * 32
    assert sandbox_http.get("/companies", params={"query": shallow}).status_code == 200


def test_a_date_whose_utc_time_is_outside_the_datetime_range_is_400(sandbox_http: httpx.Client) -> None:
    cid = first_company_id(sandbox_http)
    for url, field in (
        ("/companies", "created"),
        ("/companies", "lastSync"),
        (f"/companies/{cid}/connections", "created"),
        (f"/companies/{cid}/data/history", "requested"),
        (f"/companies/{cid}/data/history", "completed"),
    ):
        for value in ("0001-01-01T00:00:00+12:00", "9999-12-31T23:59:59.999999-12:00"):
            query = f"{field}>{value}"
            bad_request(sandbox_http.get(url, params={"query": query}), "Error parsing query", field, value)
    setting = {"dataType": "invoices", "fetchOnFirstLink": True, "syncSchedule": 24, "syncOrder": 0}
    body = {
        "companyId": cid,
        "overridesDefaults": True,
        "settings": [{**setting, "syncFromUtc": "0001-01-01T00:00:00+05:00"}],
    }
    response = sandbox_http.post(f"/companies/{cid}/syncSettings", json=body)
    assert bad_request(response)["validation"]["errors"][0]["itemId"] == "settings[0].syncFromUtc"


def test_a_tag_key_with_a_nul_character_is_400_in_tags_query_and_order_by(sandbox_http: httpx.Client) -> None:
    for key in ("\x00", "region\x00"):
        for parameter, value, named in (
            ("tags", f"{key}=uk", "Error parsing tags"),
            ("query", f"tags.{key}=uk", "Error parsing query"),
            ("orderBy", f"tags.{key}", "Error parsing orderBy"),
        ):
            response = sandbox_http.get("/companies", params={parameter: value})
            body = bad_request(response, named)
            assert key in body["error"] or repr(key)[1:-1] in body["error"], body[
                "error"
            ]  # as is, or escaped
            assert body["validation"]["errors"][0]["itemId"] == parameter
    assert sandbox_http.get("/companies", params={"tags": "region\x01=uk"}).status_code == 200


def test_a_lone_surrogate_in_a_body_string_is_400(sandbox_http: httpx.Client) -> None:
    cid = first_company_id(sandbox_http)
    headers = {"Content-Type": "application/json"}
    for method, url, body in (
        ("POST", "/companies", b'{"name": "Surrogate Ltd", "description": "\\ud800"}'),
        ("PUT", f"/companies/{cid}", b'{"name": "Surrogate Ltd", "description": "a\\udfffb"}'),
        ("PATCH", f"/companies/{cid}", b'{"description": "\\udc00"}'),
        ("PATCH", f"/companies/{cid}", b'{"tags": {"region": "\\ud800"}}'),
    ):
        response = sandbox_http.request(method, url, content=body, headers=headers)
        assert bad_request(response, "lone surrogate")["validation"]["errors"][0]["itemId"] == "body"
    paired = b'{"name": "Emoji Ltd", "description": "\\ud83d\\ude00"}'  # a pair is one character: fine
    created = sandbox_http.post("/companies", content=paired, headers=headers)
    assert created.status_code == 200 and created.json()["description"] == "\U0001f600"
