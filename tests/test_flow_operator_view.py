"""What an operator sees of a flow run in the Prefect UI (issue 18), through the real test server: a dry run
ends Completed (the UI's default filters hide custom state names) and says "dry run" in its name, tags and
message; empty tables are one line of markdown; tables lead with the columns that matter; a run over its
deletion cap says where the due items come from and what to do; the run log says what the flow found."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import text

from flows.retention_enforcement import retention_enforcement
from tests.fixtures_sandbox import SANDBOX_NOW
from tests.test_flow_retention import world  # noqa: F401 - the fixture: a scanned sandbox, one company's consents

pytestmark = pytest.mark.prefect


def run_retention(**parameters):
    state = asyncio.run(retention_enforcement(return_state=True, **parameters))
    return state, state.result(raise_on_failure=False)


def seen(flow_run_id: UUID) -> tuple[dict, dict[str, dict]]:
    """The flow run and its keyed artifacts, as the UI reads them from the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read():
        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )
        return run.model_dump(mode="json"), {a.key: a.model_dump(mode="json") for a in artifacts if a.key}

    return asyncio.run(read())


def test_a_dry_run_is_completed_says_so_everywhere_and_shows_no_empty_table(world, caplog, monkeypatch):  # noqa: F811
    from consent_lifecycle.retention import store

    caplog.set_level(logging.INFO, logger="prefect.flow_runs")
    monkeypatch.setattr(store, "ARTIFACT_ROWS", 2)  # a table capped below what there is says so
    world["ledger"].revoke(world["company"], "lending", actor="customer", channel="ui", at=SANDBOX_NOW, reason="x")

    state, summary = run_retention(now=SANDBOX_NOW + timedelta(days=31), dry_run=True)

    assert state.type.value == "COMPLETED" and state.name == "Completed"
    assert state.message == f"Dry run: {summary.due} due, nothing deleted" and summary.due >= 3
    run, artifacts = seen(state.state_details.flow_run_id)
    assert run["name"] == "retention-2026-12-02-cli-dry-run"
    assert {"dry-run", "cli"} <= set(run["tags"])
    planned = artifacts["retention-planned"]
    assert planned["type"] == "table"
    rows = json.loads(planned["data"])
    assert len(rows) == 2 and planned["description"].endswith(
        f"2 of {summary.due} shown; the full list: `consent deletions list --status planned`"
    )
    assert list(rows[0])[:5] == ["due_at", "scope", "data_type", "company", "status"]
    assert list(rows[0])[-1] == "key" and rows[0]["company"]  # the snapshot's name beside the id
    for key in ("retention-executed", "retention-held-cancelled", "retention-failed"):  # nothing: no table
        assert artifacts[key]["type"] == "markdown", key
    assert artifacts["retention-executed"]["data"].startswith("Nothing deleted at ")
    assert "| planned_new |" in artifacts["retention-summary"]["data"] and "{" not in artifacts["retention-summary"]["data"]
    logged = [r.getMessage() for r in caplog.records if r.name == "prefect.flow_runs"]
    assert any(m.startswith("Planned ") and f"{summary.due} due" in m for m in logged), logged


def test_a_run_over_its_deletion_cap_fails_naming_products_companies_and_the_next_step(world):  # noqa: F811
    world["ledger"].revoke(world["company"], "lending", actor="customer", channel="ui", at=SANDBOX_NOW, reason="x")

    state, summary = run_retention(now=SANDBOX_NOW + timedelta(days=31), max_deletions=1,
                                   company_ids=[world["company"]])

    assert state.is_failed() and summary.executed_done == 0
    with world["engine"].connect() as db:
        name = db.execute(text("SELECT name FROM companies WHERE id = :c"), {"c": world["company"]}).scalar_one()
    run, _ = seen(state.state_details.flow_run_id)
    assert run["name"] == "retention-2026-12-02-cli-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    assert state.message.startswith(f"{summary.due} deletions due exceed max_deletions=1: nothing deleted.")
    assert f"Why they are due: consent for lending ended {summary.due}." in state.message
    assert f"({world['company']}) {summary.due}." in state.message  # the company, by name and id
    assert f"`consent run retention --execute --max-deletions {summary.due}`" in state.message


def test_an_expiry_scan_dry_run_says_so_and_its_table_leads_with_class_expiry_and_company(flow_env):
    from flows.connection_expiry_scan import connection_expiry_scan

    state = asyncio.run(connection_expiry_scan(now=SANDBOX_NOW, dry_run=True, return_state=True))

    summary = state.result()
    assert state.name == "Completed" and state.message == summary.message()
    assert state.message.startswith("Dry run: ") and state.message.endswith("nothing written or sent")
    run, artifacts = seen(state.state_details.flow_run_id)
    assert run["name"] == "expiry-scan-2026-11-01-cli-dry-run" and "dry-run" in run["tags"]
    rows = json.loads(artifacts["expiry-attention"]["data"])
    assert list(rows[0])[:4] == ["expiry_class", "expires_at", "threshold_days", "company"]
    assert all(row["company"] for row in rows)  # the name Codat gave the company, beside its id
    order = {"expired": 0, "expiring": 1, "stale": 2}
    assert [order[r["expiry_class"]] for r in rows] == sorted(order[r["expiry_class"]] for r in rows)
    assert not any(r["status"] == "Deauthorized" and r["expires_at"] and r["expires_at"] > "2026-11-01T12:00:00Z"
                   for r in rows)
    summary_md = artifacts["expiry-summary"]["data"]
    assert "| notices | count |" in summary_md and "{" not in summary_md


def test_the_full_list_behind_a_capped_expiry_table_is_the_command_its_cap_line_names(world):  # noqa: F811
    from typer.testing import CliRunner

    from consent_lifecycle.cli import app
    from flows.connection_expiry_scan import connection_expiry_scan

    state = asyncio.run(connection_expiry_scan(now=SANDBOX_NOW, dry_run=True, return_state=True))
    _, artifacts = seen(state.state_details.flow_run_id)
    shown = json.loads(artifacts["expiry-attention"]["data"])

    listed = CliRunner().invoke(app, ["connections", "attention", "--now", "2026-11-01T12:00:00Z", "--json"])

    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == shown  # the same rows, in the same order, as the scan's table
