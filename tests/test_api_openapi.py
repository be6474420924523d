"""The Consent API's OpenAPI document is valid, and the server answers whatever it describes without a
server error: Schemathesis generates requests from the document (valid and invalid bodies, paths and
queries) and sends them over HTTP with an admin key, on SQLite and PostgreSQL."""

from __future__ import annotations

import os

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error

EXAMPLES = int(os.environ.get("CONSENT_FUZZ_EXAMPLES", "15"))
CONTRACT = {
    ("GET", "/v1/companies/{company_id}/consents"), ("GET", "/v1/companies/{company_id}/history"),
    ("POST", "/v1/companies/{company_id}/consents/{product}"),
    ("POST", "/v1/companies/{company_id}/consents/{product}/extend"),
    ("POST", "/v1/companies/{company_id}/consents/{product}/reconfirm"),
    ("POST", "/v1/companies/{company_id}/consents/{product}/revoke"),
    ("GET", "/v1/companies/{company_id}/consents/{product}/impact"),
    ("POST", "/v1/companies/{company_id}/connections/{connection_id}/disconnect"),
}


def test_the_openapi_document_is_valid_and_holds_the_contracted_paths(api):
    document = httpx.get(f"{api.url}/openapi.json").json()
    validate(document)
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert CONTRACT <= described, sorted(CONTRACT - described)


def test_no_request_the_document_allows_gets_a_server_error(api):
    """Each operation in turn (Schemathesis' pytest plugin does not load under this pytest): generated cases,
    positive and negative, sent with an admin key; any 5xx fails with the case that caused it."""
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    headers = {"Authorization": f"Bearer {api.keys['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= len(CONTRACT)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers_without_a_server_error(case):
            response = case.call(base_url=api.url, headers=headers)
            case.validate_response(response, checks=[not_a_server_error])

        answers_without_a_server_error()
