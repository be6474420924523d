"""`consent run reconcile`, `backfill reconcile`, `findings list`, `access ...` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest

from consent_lifecycle.db.migrate import upgrade
from tests.fixtures_cli import consent as consent_in_process
from tests.fixtures_sandbox import SANDBOX_API_KEY, SANDBOX_NOW_ISO, sandbox_client

pytestmark = pytest.mark.prefect


@pytest.fixture
def cli(fresh_sandbox, sqlite_url, prefect_harness, tmp_path):
    """`consent` with this test's database, sandbox and Prefect server (in this process, as its console
    script runs it: tests/fixtures_cli.py)."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ, "CONSENT_DATABASE_URL": sqlite_url, "CONSENT_CODAT_BASE_URL": fresh_sandbox.base_url,
        "CONSENT_CODAT_API_KEY": SANDBOX_API_KEY, "PREFECT_API_URL": PREFECT_API_URL.value(),
        "CONSENT_NOTIFY_FILE": str(tmp_path / "notices.jsonl"),
    }

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = consent_in_process(args, env)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        return result

    upgrade(sqlite_url)
    return run


@pytest.fixture
def consent(cli):
    """`cli` after a sync: the snapshot holds the sandbox's companies."""
    cli("sync", "--now", SANDBOX_NOW_ISO)
    return cli


def a_company_with_accounting(sandbox) -> tuple[str, str, str]:
    with sandbox_client(sandbox) as http:
        for company in http.get("/companies", params={"pageSize": 100}).json()["results"]:
            for connection in company["dataConnections"]:
                if connection["sourceType"] == "Accounting" and connection["status"] == "Linked":
                    return company["id"], connection["id"], connection["created"]
    pytest.fail("no Linked accounting connection")


def test_backfill_twice_gives_identical_findings(consent, fresh_sandbox):
    company, accounting, created = a_company_with_accounting(fresh_sandbox)
    consent("grant", company, "dashboard", "--connection", accounting, "--at", created)
    # 90 days in 9 slices of 10 (a flow run each: day slices would be 90 runs, ~0.7 s each here)
    window = ("--start", "2026-08-03T00:00:00Z", "--end", "2026-11-01T00:00:00Z", "--slice-days", "10")
    first = json.loads(consent("backfill", "reconcile", *window, "--company", company, "--json").stdout)
    findings = consent("findings", "list", "--json").stdout
    second = json.loads(consent("backfill", "reconcile", *window, "--company", company, "--json").stdout)
    assert len(first) == 9 and sum(s["new"] for s in first) > 0
    assert sum(s["new"] for s in second) == 0
    assert consent("findings", "list", "--json").stdout == findings
    rows = json.loads(findings)
    assert rows and {"id", "kind", "company_id", "connection_id", "data_type", "product", "first_seen",
                     "last_seen", "resolved_at"} <= set(rows[0])
    # a past window checks pulls and reads, not the present (sync settings, missing pulls)
    assert "unconsented_pull" in {r["kind"] for r in rows}
    assert not {r["kind"] for r in rows} & {"unconsented_sync_setting", "missing_pull"}
    assert all(r["last_seen"].endswith("Z") for r in rows)


def test_via_deployment_creates_one_run_per_slice_once(consent):
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from flows.consent_reconciliation import consent_reconciliation

    async def deploy():
        deployment = await consent_reconciliation.to_deployment(name="consent-reconciliation")
        return await deployment.apply()

    async def runs(deployment_id):
        async with get_client() as client:
            found = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
        return sorted((r.parameters["window_start"], r.parameters["window_end"]) for r in found)

    deployment_id = asyncio.run(deploy())
    window = ("--start", "2026-10-29T12:00:00Z", "--end", "2026-11-01T00:00:00Z", "--via-deployment")
    created = json.loads(consent("backfill", "reconcile", *window, "--json").stdout)
    again = json.loads(consent("backfill", "reconcile", *window, "--json").stdout)
    assert [r["flow_run_id"] for r in again] == [r["flow_run_id"] for r in created]
    assert len(asyncio.run(runs(deployment_id))) == 3  # 29th noon-30th, 30th-31st, 31st-1st


def test_run_reconcile_and_access_commands(consent, fresh_sandbox):
    company, accounting, created = a_company_with_accounting(fresh_sandbox)
    consent("grant", company, "lending", "--connection", accounting, "--at", created)
    read_at = "2026-11-01T11:00:00Z"  # an hour before the run
    check = ("--product", "dashboard", "--company", company, "--data-type", "balanceSheet", "--at", read_at)
    assert json.loads(consent("access", "check", *check, "--json", code=1).stdout)["permitted"] is False
    read = json.loads(consent("access", "record", *check, "--json").stdout)
    summary = json.loads(consent("run", "reconcile", "--company", company, "--now", SANDBOX_NOW_ISO, "--json").stdout)
    assert summary["findings"]["product_read_outside_consent"] == 1 and summary["sync_settings_set"] == 1
    (finding,) = json.loads(consent("findings", "list", "--kind", "product_read_outside_consent", "--json").stdout)
    assert finding["key"] == f"product_read_outside_consent:{read['id']}"


def test_run_reconcile_full_then_incremental(consent):
    full = json.loads(consent("run", "reconcile", "--full", "--now", SANDBOX_NOW_ISO, "--json").stdout)
    assert full["selection"] == "full" and full["reasons"] == {"full": full["companies"]} and full["companies"] > 0
    assert full["codat_requests"] >= 2 * full["companies"] and full["deferred"] == 0
    assert sum(full["codat_requests_by_reason"].values()) == full["codat_requests"]
    # an hour later, the same day: nothing changed, nothing due; no sweep again the same day
    later = consent("run", "reconcile", "--sweep-days", "3", "--now", "2026-11-01T13:00:00Z", "--json").stdout
    incremental = json.loads(later)
    assert incremental["selection"] == "incremental"
    assert set(incremental["reasons"]) <= {"in_flight", "remediation_pending"}, incremental["reasons"]
    assert incremental["companies"] < full["companies"]
    text = consent("run", "reconcile", "--now", "2026-11-01T13:30:00Z").stdout
    assert "selection: incremental" in text and "Codat requests:" in text


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("backfill", "reconcile", "--start", "2026-11-02T00:00:00Z", "--end", "2026-11-01T00:00:00Z"),
         "--start 2026-11-02T00:00:00Z is not before --end"),
        (("backfill", "reconcile", "--start", "yesterday", "--end", "2026-11-01T00:00:00Z"), "'yesterday'"),
        (("run", "reconcile", "--company", "not-a-uuid"), "'not-a-uuid'"),
        (("run", "reconcile", "--sweep-days", "0"), "0 is not in the range >= 1"),
        (("run", "reconcile", "--sweep-days", "-3"), "-3 is not in the range >= 1"),
        (("run", "reconcile", "--sweep-days", "weekly"), "'weekly'"),
        (("run", "reconcile", "--budget-minutes", "0"), "0 is not in the range >= 1"),
        (("run", "reconcile", "--full", "--company", "9f6f1d6e-0000-4000-8000-000000000000"),
         "--full reads every company"),
        (("findings", "list", "--kind", "typo"), "'typo'"),
        (("access", "record", "--product", "payroll", "--company", "9f6f1d6e-0000-4000-8000-000000000000",
          "--data-type", "invoices"), "'payroll'"),
        (("access", "record", "--product", "dashboard", "--company", "9f6f1d6e-0000-4000-8000-000000000000",
          "--data-type", "invoice"), "'invoice'"),
    ],
)
def test_bad_input_exits_2_naming_the_value_and_writes_nothing(cli, sqlite_url, args, named):
    from sqlalchemy import create_engine, text

    def counts():
        with create_engine(sqlite_url).connect() as db:
            return [db.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in
                    ("findings", "access_records", "pull_operations", "deletion_items")]

    before = counts()
    result = cli(*args, code=2)
    assert named in result.stderr
    assert counts() == before
