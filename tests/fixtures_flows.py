"""The environment a flow test runs in: the test's database, the reset sandbox, the Prefect harness."""

from __future__ import annotations

import pytest

from tests.fixtures_sandbox import SANDBOX_API_KEY


@pytest.fixture
def flow_env(fresh_sandbox, sqlite_url, prefect_harness, monkeypatch, tmp_path):
    """Settings the tasks read, pointing at this test's SQLite file and sandbox; notices go to a file."""
    monkeypatch.setenv("CONSENT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CONSENT_CODAT_BASE_URL", fresh_sandbox.base_url)
    monkeypatch.setenv("CONSENT_CODAT_API_KEY", SANDBOX_API_KEY)
    monkeypatch.setenv("CONSENT_NOTIFY_FILE", str(tmp_path / "notices.jsonl"))
    return monkeypatch
