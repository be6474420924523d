"""`consent run retention` (a dry run unless `--execute`; `--dry-run` says so out loud), as a user runs it:
in-process through Typer's runner, against the sandbox and the Prefect harness where a flow runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from consent_lifecycle.cli import app
from consent_lifecycle.db import make_engine
from tests.fixtures_sandbox import SANDBOX_NOW_ISO
from tests.test_cli_reconcile import a_company_with_accounting

runner = CliRunner()
REVOKED = "2026-11-01T13:00:00Z"  # lending revoked an hour after the sync
PLANNED = "2026-11-02T13:00:00Z"  # a day later: planned, nothing due
DUE = "2026-12-01T14:00:00Z"  # lending's 30 days of retention have passed


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def ok_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json"))


@pytest.fixture
def no_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A database URL whose file must never come to exist."""
    database = tmp_path / "never.db"
    monkeypatch.setenv("CONSENT_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.delenv("CONSENT_CODAT_API_KEY", raising=False)
    return database


def test_help_says_a_dry_run_is_the_default():
    shown = ok("run", "retention", "--help")
    assert "--dry-run" in shown and "(the default)" in shown


def test_dry_run_with_execute_is_refused_before_anything_is_written(no_database):
    result = runner.invoke(app, ["run", "retention", "--dry-run", "--execute"])
    assert result.exit_code == 2, result.output
    assert "--dry-run" in result.output and "--execute" in result.output and "Traceback" not in result.output
    assert not no_database.exists()


@pytest.mark.prefect
def test_a_dry_run_deletes_nothing_and_execute_does(
    flow_env, fresh_sandbox, sqlite_url, tmp_path
):
    flow_env.chdir(tmp_path)
    flow_env.setenv("CONSENT_LOCAL_STORE_TABLES", json.dumps({"balanceSheet": "store_balance_sheets"}))
    ok("sync", "--now", SANDBOX_NOW_ISO)
    company, accounting, linked = a_company_with_accounting(fresh_sandbox)
    engine = make_engine(sqlite_url)
    with engine.begin() as db:  # the client's own store
        db.execute(text("CREATE TABLE store_balance_sheets (company_id TEXT, body TEXT)"))
        db.execute(text("INSERT INTO store_balance_sheets VALUES (:c, 'x'), (:c, 'y')"), {"c": company})

    def stored() -> int:
        with engine.connect() as db:
            return db.execute(text("SELECT count(*) FROM store_balance_sheets")).scalar()

    for product in ("dashboard", "lending"):
        ok("grant", company, product, "--connection", accounting, "--at", linked)
    ok("revoke", company, "lending", "--yes", "--at", REVOKED)

    planned = ok_json("run", "retention", "--dry-run", "--now", PLANNED)
    assert (planned["state"], planned["dry_run"], planned["due"]) == ("Dry run", True, 0)
    assert planned["planned_new"] >= 3  # lending's own financial statements; what dashboard reads is kept
    unsaid = ok_json("run", "retention", "--now", PLANNED)  # the default is the same dry run
    assert (unsaid["state"], unsaid["dry_run"], unsaid["planned_new"]) == ("Dry run", True, 0)
    due = ok_json("run", "retention", "--dry-run", "--now", DUE)
    assert due["due"] == planned["planned_new"] and due["executed_done"] == 0
    assert "nothing deleted" in due["message"]
    assert stored() == 2 and ok_json("deletions", "receipts") == []

    done = ok_json("run", "retention", "--execute", "--now", DUE)
    assert done["executed_done"] == due["due"] and stored() == 0
    assert len(ok_json("deletions", "receipts", "--company", company)) == done["executed_done"]
    engine.dispose()
