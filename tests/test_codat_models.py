"""The client's own view of Codat matches the spec: enums, and the request bodies it sends."""

from __future__ import annotations

import json
import typing

from consent_lifecycle.codat.models import (
    CompanySyncSettings,
    ConnectionStatus,
    DatasetStatus,
    DataTypeKey,
    SourceType,
    SyncSetting,
)
from consent_lifecycle.datatypes import CONNECTION_STATUSES, DATA_TYPES, DATASET_STATUSES, SOURCE_TYPES
from tests.openapi_spec import SPEC_PATH, validate_request_body

SCHEMAS = json.loads(SPEC_PATH.read_text())["components"]["schemas"]


def test_enums_are_codats():
    connection = SCHEMAS["Connection"]
    assert list(DATA_TYPES) == SCHEMAS["DataStatus"]["properties"]["dataType"]["enum"]
    assert list(typing.get_args(DataTypeKey)) == list(DATA_TYPES)
    assert (
        list(typing.get_args(DatasetStatus))
        == list(DATASET_STATUSES)
        == SCHEMAS["PullOperation"]["properties"]["status"]["enum"]
    )
    assert set(typing.get_args(ConnectionStatus)) == set(CONNECTION_STATUSES)
    assert set(typing.get_args(SourceType)) == set(SOURCE_TYPES)
    assert "Linked" in json.dumps(connection) and "BankFeed" in json.dumps(connection)


def test_the_sync_settings_body_the_client_sends_is_valid():
    body = CompanySyncSettings(
        company_id="5d9f4c1c-6bd9-4b5e-9ad4-0c56e3c1c6a0",
        settings=[
            SyncSetting(data_type="invoices", fetch_on_first_link=True, sync_schedule=24, sync_order=0)
        ],
        overrides_defaults=True,
    ).to_codat()
    validate_request_body("POST", "/companies/{companyId}/syncSettings", body)
    assert body["settings"][0] == {
        "dataType": "invoices",
        "fetchOnFirstLink": True,
        "syncSchedule": 24,
        "syncOrder": 0,
    }
