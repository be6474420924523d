"""snapshot-sync run for real through Prefect against the sandbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import select

from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.models import Connection
from flows.snapshot_sync import snapshot_sync
from tests.fixtures_sandbox import SANDBOX_API_KEY, SANDBOX_NOW, sandbox_client

pytestmark = pytest.mark.prefect


@pytest.fixture
def configured(fresh_sandbox, sqlite_url, prefect_harness, monkeypatch):
    monkeypatch.setenv("CONSENT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CONSENT_CODAT_BASE_URL", fresh_sandbox.base_url)
    monkeypatch.setenv("CONSENT_CODAT_API_KEY", SANDBOX_API_KEY)
    return make_engine(sqlite_url)


def _connections(engine) -> dict[str, Connection]:
    with engine.connect() as db:
        return {row.id: row for row in db.execute(select(Connection)).all()}


def test_tracks_deauthorization_and_reauthorization_across_runs(configured, fresh_sandbox):
    first = asyncio.run(snapshot_sync(now=SANDBOX_NOW, page_size=7))  # 20 companies: 3 pages
    rows = _connections(configured)
    assert first.companies == 20 and first.new == len(rows) == first.connection_count
    bank = next(r for r in rows.values() if r.source_type == "Banking" and r.status == "Linked")

    later, latest = SANDBOX_NOW + timedelta(days=1), SANDBOX_NOW + timedelta(days=2)
    with sandbox_client(fresh_sandbox) as admin:
        admin.post(f"/_sandbox/connections/{bank.id}/deauthorize").raise_for_status()
    second = asyncio.run(snapshot_sync(now=later))
    assert (second.new, second.changed) == (0, 1)
    assert _connections(configured)[bank.id].status == "Deauthorized"

    with sandbox_client(fresh_sandbox) as admin:
        admin.post(f"/_sandbox/connections/{bank.id}/reconnect").raise_for_status()
    third = asyncio.run(snapshot_sync(now=latest))
    reconnected = _connections(configured)[bank.id]
    assert third.changed == 1 and reconnected.status == "Linked"
    assert reconnected.last_authorized_at == latest  # a re-authorization restarts the consent clock
    assert reconnected.first_seen_at == SANDBOX_NOW


def test_a_subset_of_companies_and_the_operator_artifact(configured, fresh_sandbox):
    with sandbox_client(fresh_sandbox) as http:
        ids = [c["id"] for c in http.get("/companies", params={"pageSize": 3}).json()["results"]]
    result = asyncio.run(snapshot_sync(company_ids=ids, now=SANDBOX_NOW))
    assert result.companies == 3
    assert {r.company_id for r in _connections(configured).values()} == set(ids)

    async def latest_artifact():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    artifacts = {a.key: a for a in asyncio.run(latest_artifact())}
    table = artifacts["snapshot-connections"].data
    assert "Accounting" in str(table) and SANDBOX_API_KEY not in str(table)
