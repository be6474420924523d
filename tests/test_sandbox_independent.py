"""The sandbox stands in for Codat with its own copy of Codat's facts; they must agree with ours."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr

from codat_sandbox import codat_types
from codat_sandbox.webhooks import sign
from consent_lifecycle import datatypes
from consent_lifecycle.codat.webhooks import verify


def test_sandbox_knows_codats_data_types_and_statuses_as_we_do():
    assert codat_types.DATA_TYPE_SOURCE == datatypes.DATA_TYPE_SOURCE
    assert codat_types.DATA_TYPES == datatypes.DATA_TYPES
    assert codat_types.CONNECTION_STATUSES == datatypes.CONNECTION_STATUSES
    assert codat_types.DATASET_STATUSES == datatypes.DATASET_STATUSES
    assert codat_types.SOURCE_TYPES == datatypes.SOURCE_TYPES


def test_a_delivery_the_sandbox_signs_is_one_our_receiver_verifies():
    secret = SecretStr("whsec_" + "c2VjcmV0LWtleS1ieXRlcw==")
    body = b'{"id": "e1", "eventType": "connection.connected", "generatedDate": "2026-11-01T12:00:00Z", "payload": {}}'
    now = datetime.now(UTC).replace(microsecond=0)  # the library checks the timestamp against the real clock too
    stamp = int(now.timestamp())
    headers = {"webhook-id": "e1", "webhook-timestamp": str(stamp), "webhook-signature": sign(secret, "e1", stamp, body)}
    assert verify(secret, headers, body, now).event_type == "connection.connected"
    headers["webhook-signature"] = sign(SecretStr("whsec_b3RoZXI="), "e1", stamp, body)
    try:
        verify(secret, headers, body, now)
    except ValueError as exc:
        assert "No matching signature" in str(exc)
    else:
        raise AssertionError("a delivery signed with another secret was accepted")
