"""The `consent` command line: what a user types and sees, exit codes, and that bad input writes nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from consent_lifecycle.cli import app
from consent_lifecycle.db.models import Connection
from tests.fixtures_sandbox import SANDBOX_API_KEY

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a database URL of its own and no Codat settings."""
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "consent.db"
    monkeypatch.setenv("CONSENT_DATABASE_URL", f"sqlite:///{database}")
    for name in ("CONSENT_CODAT_BASE_URL", "CONSENT_CODAT_API_KEY", "CONSENT_CATALOG"):
        monkeypatch.delenv(name, raising=False)
    return database


def test_every_command_has_help():
    for command in (["--help"], ["db", "upgrade", "--help"], ["sandbox", "serve", "--help"],
                    ["catalog", "show", "--help"], ["sync", "--help"], ["demo", "--help"],
                    ["run", "expiry-scan", "--help"], ["notifications", "list", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output


def test_installed_entry_point_runs():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "consent"), "catalog", "show", "--json"],
        check=False, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert {row["key"] for row in json.loads(result.stdout)} >= {"dashboard", "lending", "bank-feeds", "spend-insights"}


def test_catalog_show_json_is_an_array_of_snake_case_objects(env):
    result = runner.invoke(app, ["catalog", "show", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    lending = next(row for row in rows if row["key"] == "lending")
    assert lending["retention_days"] == 30 and "balanceSheet" in lending["required"]
    assert all(key == key.lower() and "-" not in key for row in rows for key in row)


def test_a_bad_catalog_exits_2_naming_file_and_value(env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\n[[product]]\nkey = "x"\nname = "X"\nrequired = ["invoicez"]\nretention_days = 1\n')
    result = runner.invoke(app, ["catalog", "show", "--catalog", str(bad)])
    assert result.exit_code == 2
    assert "bad.toml" in result.output and "invoicez" in result.output


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["sync", "--company", "not-a-uuid"], "not-a-uuid"),
        (["sync", "--now", "yesterday"], "yesterday"),
        (["sync", "--now", "2026-13-01T00:00:00Z"], "2026-13-01"),
        (["sync"], "CONSENT_CODAT_API_KEY"),
        (["sandbox", "serve", "--port", "70000"], "70000"),
        (["sandbox", "serve"], "API key"),
        (["demo", "--companies", "0"], "0"),
        (["catalog", "show", "--catalog", "/nonexistent/catalog.toml"], "/nonexistent/catalog.toml"),
        (["run", "expiry-scan", "--company", "12345"], "12345"),
        (["run", "expiry-scan", "--now", "tomorrow"], "tomorrow"),
        (["run", "expiry-scan"], "CONSENT_CODAT_API_KEY"),
        (["notifications", "list", "--status", "lost"], "lost"),
    ],
    ids=["bad-uuid", "bad-time", "bad-month", "no-key", "bad-port", "serve-no-key", "no-companies", "missing-catalog",
         "scan-bad-uuid", "scan-bad-time", "scan-no-key", "bad-status"],
)
def test_bad_input_exits_2_naming_the_value_and_writes_nothing(env, args, names):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert names in result.output
    assert not env.exists()  # not even an empty database


def test_db_upgrade_creates_the_database(env):
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "revision 0007" in result.output and env.exists()


@pytest.mark.prefect
def test_sync_fills_the_snapshot_and_reruns_change_nothing(env, fresh_sandbox, prefect_harness, monkeypatch):
    monkeypatch.setenv("CONSENT_CODAT_BASE_URL", fresh_sandbox.base_url)
    monkeypatch.setenv("CONSENT_CODAT_API_KEY", SANDBOX_API_KEY)
    first = runner.invoke(app, ["sync", "--now", "2026-11-01T12:00:00Z", "--json"])
    assert first.exit_code == 0, first.output
    rows = json.loads(first.stdout)
    assert {"source_type", "status", "connections"} <= set(rows[0])
    stored = create_engine(f"sqlite:///{env}").connect().execute(select(func.count()).select_from(Connection)).scalar()
    assert sum(row["connections"] for row in rows) == stored > 20
    again = runner.invoke(app, ["sync", "--now", "2026-11-01T13:00:00Z"])
    assert again.exit_code == 0, again.output
    assert "20 companies" in again.output and "0 new, 0 changed status, 0 gone" in again.output
    assert SANDBOX_API_KEY not in first.output + again.output


@pytest.mark.prefect
def test_demo_runs_end_to_end(env, prefect_harness):
    result = runner.invoke(app, ["demo", "--companies", "12", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "12 companies" in result.output and "expiring" in result.output and "lending" in result.output
    assert env.exists()
    # what the deletion items the reconciliation opened mean, and the operator's next step, with the count due
    due = re.search(r"retention: (\d+) deletion items are due now", result.output)
    assert due, result.output
    assert f"consent run retention --execute --max-deletions {due.group(1)}" in result.output
    assert "consent deletions list --status planned" in result.output
    listed = runner.invoke(app, ["notifications", "list", "--json"])
    rows = json.loads(listed.stdout)
    assert rows and {"id", "key", "company_id", "connection_id", "kind", "threshold_days", "expires_at", "status",
                     "link"} <= set(rows[0])
    assert {row["status"] for row in rows} == {"sent"}  # to the default file channel
    assert (env.parent / ".consent" / "notifications.jsonl").exists()
