"""`consent run retention` (a dry run unless `--execute`; `--dry-run` says so out loud) and `consent deletions
receipts / receipt ID`, as a user runs them: in-process through Typer's runner, against the sandbox and the
Prefect harness where a flow runs."""

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


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "2.5", "99999999999999999999"])
def test_a_receipt_id_that_is_not_a_positive_integer_exits_2_naming_it(no_database, bad):
    result = runner.invoke(app, ["deletions", "receipt", bad])
    assert result.exit_code == 2, result.output
    assert bad in result.output and "Traceback" not in result.output
    assert not no_database.exists()


def test_an_unknown_receipt_id_exits_2_naming_it(sqlite_url, monkeypatch):
    monkeypatch.setenv("CONSENT_DATABASE_URL", sqlite_url)
    for args in (["deletions", "receipt", "42"], ["deletions", "receipt", "42", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "receipt 42" in result.output and not result.stdout


@pytest.mark.prefect
def test_a_dry_run_deletes_nothing_then_execute_leaves_receipts_each_shown_by_its_id(
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
    assert (planned["state"], planned["dry_run"], planned["due"]) == ("Completed", True, 0)
    assert planned["message"] == "Dry run: 0 due, nothing deleted"
    assert planned["planned_new"] >= 3  # lending's own financial statements; what dashboard reads is kept
    unsaid = ok_json("run", "retention", "--now", PLANNED)  # the default is the same dry run
    assert (unsaid["state"], unsaid["message"], unsaid["planned_new"]) == ("Completed", planned["message"], 0)
    due = ok_json("run", "retention", "--dry-run", "--now", DUE)
    assert due["due"] == planned["planned_new"] and due["executed_done"] == 0
    assert "nothing deleted" in due["message"]
    assert stored() == 2 and ok_json("deletions", "receipts") == []

    done = ok_json("run", "retention", "--execute", "--now", DUE)
    assert done["executed_done"] == due["due"] and stored() == 0
    receipts = ok_json("deletions", "receipts", "--company", company)
    assert len(receipts) == done["executed_done"]
    for receipt in receipts:  # one by its id: the same object as its row in the list
        assert ok_json("deletions", "receipt", str(receipt["id"])) == receipt
    balance = next(r for r in receipts if r["what"]["data_type"] == "balanceSheet")
    assert balance["rows_purged"] == 2
    shown = ok("deletions", "receipt", str(balance["id"]))
    assert company in shown and "balanceSheet" in shown and balance["executed_at"] in shown
    beyond = str(max(r["id"] for r in receipts) + 1)
    missing = runner.invoke(app, ["deletions", "receipt", beyond])
    assert missing.exit_code == 2 and f"receipt {beyond}" in missing.output
    engine.dispose()
