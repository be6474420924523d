"""The flows read the Codat API key from a Prefect Secret block when CONSENT_CODAT_API_KEY is not set."""

from __future__ import annotations

import asyncio

import pytest

from flows.connection_expiry_scan import connection_expiry_scan
from tests.fixtures_sandbox import SANDBOX_API_KEY, SANDBOX_NOW

pytestmark = pytest.mark.prefect


def test_the_key_comes_from_the_named_secret_block(flow_env):
    from prefect.blocks.system import Secret

    Secret(value=SANDBOX_API_KEY).save("codat-key-for-secret-block-test", overwrite=True)
    flow_env.delenv("CONSENT_CODAT_API_KEY")
    flow_env.setenv("CONSENT_CODAT_API_KEY_BLOCK", "codat-key-for-secret-block-test")

    summary = asyncio.run(connection_expiry_scan(now=SANDBOX_NOW, dry_run=True))

    assert summary.companies > 0


def test_without_key_or_block_the_run_fails_naming_both(flow_env):
    flow_env.delenv("CONSENT_CODAT_API_KEY")
    flow_env.setenv("CONSENT_CODAT_API_KEY_BLOCK", "no-such-block-anywhere")

    state = asyncio.run(connection_expiry_scan(now=SANDBOX_NOW, dry_run=True, return_state=True))

    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "CONSENT_CODAT_API_KEY" in message and "'no-such-block-anywhere'" in message
