"""The ledger commands of `consent`, in-process: bad input exits 2 naming the value and writes nothing;
the JSON shapes of history, impact and holds. The snapshot is filled directly (no sandbox, no Prefect)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from consent_lifecycle import cli
from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.codat.models import Company
from consent_lifecycle.db import make_engine
from consent_lifecycle.db.models import Consent, ConsentConnection, ConsentDataType, ConsentEvent, LegalHold
from consent_lifecycle.snapshot import observe
from consent_lifecycle.snapshot.store import apply_observation

runner = CliRunner()
app = cli.app

SEEN = datetime(2026, 11, 1, 12, tzinfo=UTC)
GRANTED = "2026-11-01T13:00:00Z"
LATER = "2026-11-02T09:00:00Z"
COMPANY = "a1111111-1111-4111-8111-111111111111"
ACCOUNTING = "a2222222-2222-4222-8222-222222222222"
BANK = "a3333333-3333-4333-8333-333333333333"
SHOP = "a4444444-4444-4444-8444-444444444444"
OTHER = "b1111111-1111-4111-8111-111111111111"
OTHER_ACCOUNTING = "b2222222-2222-4222-8222-222222222222"
UNKNOWN = "c1111111-1111-4111-8111-111111111111"
DASHBOARD = sorted(load_catalog().product("dashboard").required)


def codat_company(company_id: str, connections: list[tuple[str, str, str]]) -> Company:
    return Company.model_validate(
        {
            "id": company_id, "name": "Acme Ltd", "redirect": f"https://link.codat.io/company/{company_id}",
            "created": "2026-05-01T00:00:00Z", "tags": {"region": "uk"},
            "dataConnections": [
                {
                    "id": connection_id, "integrationId": "44444444-4444-4444-8444-444444444444",
                    "sourceId": "55555555-5555-4555-8555-555555555555", "platformName": "P",
                    "linkUrl": f"https://link-api.codat.io/companies/{company_id}/connections/{connection_id}/start",
                    "status": status, "created": "2026-06-01T00:00:00Z", "sourceType": source_type,
                }
                for connection_id, source_type, status in connections
            ],
        }
    )


@pytest.fixture
def db(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A migrated database holding two companies; COMPANY has dashboard granted at GRANTED."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONSENT_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("CONSENT_CATALOG", raising=False)
    engine = make_engine(sqlite_url)
    companies = [
        codat_company(
            COMPANY,
            [(ACCOUNTING, "Accounting", "Linked"), (BANK, "Banking", "Linked"), (SHOP, "Commerce", "Linked")],
        ),
        codat_company(OTHER, [(OTHER_ACCOUNTING, "Accounting", "Linked")]),
    ]
    apply_observation(engine, observe(companies), SEEN)
    ok(["grant", COMPANY, "dashboard", "--at", GRANTED])
    ok(["hold", "add", COMPANY, "--reason", "audit 2026", "--at", GRANTED])  # hold 1
    yield engine
    engine.dispose()


def ok(args: list[str], **kwargs) -> str:
    result = runner.invoke(app, args, **kwargs)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def ok_json(args: list[str]):
    return json.loads(ok([*args, "--json"]))


def counts(engine) -> dict[str, int]:
    """Everything a consent command could write: events, current state, holds (released or not)."""
    with engine.connect() as conn:
        tables = {
            "events": ConsentEvent, "consents": Consent, "types": ConsentDataType,
            "connections": ConsentConnection, "holds": LegalHold,
        }
        totals = {name: conn.execute(select(func.count()).select_from(model)).scalar() for name, model in tables.items()}
        totals["released"] = conn.execute(
            select(func.count()).select_from(LegalHold).where(LegalHold.released_at.is_not(None))
        ).scalar()
        totals["updated"] = conn.execute(select(func.max(Consent.updated_at))).scalar()
    return totals


BAD_INPUT = [
    ("bad-company-uuid", ["grant", "not-a-uuid", "dashboard"], "not-a-uuid"),
    ("bad-connection-uuid", ["grant", COMPANY, "lending", "--connection", "conn-42"], "conn-42"),
    ("unknown-product", ["grant", COMPANY, "lendng"], "lendng"),
    ("unknown-data-type", ["grant", COMPANY, "lending", "--data-type", "invoicez"], "invoicez"),
    ("undeclared-data-type", ["extend", COMPANY, "dashboard", "--data-type", "balanceSheet"], "balanceSheet"),
    ("bad-channel", ["grant", COMPANY, "lending", "--channel", "carrier-pigeon"], "carrier-pigeon"),
    ("bad-at", ["grant", COMPANY, "lending", "--at", "yesterday"], "yesterday"),
    ("bad-at-month", ["revoke", COMPANY, "dashboard", "--yes", "--at", "2026-13-01T00:00:00Z"], "2026-13-01"),
    ("bad-as-of", ["show", COMPANY, "--as-of", "last tuesday"], "last tuesday"),
    ("unknown-company", ["grant", UNKNOWN, "dashboard"], UNKNOWN),
    ("wrong-source-type", ["grant", COMPANY, "lending", "--connection", SHOP], SHOP),
    ("another-companys-connection", ["grant", COMPANY, "lending", "--connection", OTHER_ACCOUNTING], OTHER_ACCOUNTING),
    ("revoke-not-granted", ["revoke", COMPANY, "lending", "--yes"], "lending"),
    ("extend-not-granted", ["extend", COMPANY, "lending", "--data-type", "payments"], "lending"),
    ("extend-adds-nothing", ["extend", COMPANY, "dashboard", "--data-type", "invoices"], "dashboard"),
    ("reconfirm-not-granted", ["reconfirm", COMPANY, "bank-feeds"], "bank-feeds"),
    ("grant-twice", ["grant", COMPANY, "dashboard"], "dashboard"),
    ("at-before-last-event", ["extend", COMPANY, "dashboard", "--data-type", "payments", "--at", "2026-11-01T12:30:00Z"],
     "2026-11-01T12:30:00Z"),
    ("revoke-without-yes", ["revoke", COMPANY, "dashboard"], "--yes"),
    ("disconnect-without-yes", ["disconnect", COMPANY, ACCOUNTING], "--yes"),
    ("disconnect-bad-uuid", ["disconnect", COMPANY, "acct", "--yes"], "acct"),
    ("disconnect-another-companys", ["disconnect", COMPANY, OTHER_ACCOUNTING, "--yes"], OTHER_ACCOUNTING),
    ("disconnect-unknown-connection", ["disconnect", COMPANY, UNKNOWN, "--yes"], UNKNOWN),
    ("disconnect-unused-connection", ["disconnect", COMPANY, BANK, "--yes"], BANK),
    ("impact-not-granted", ["impact", COMPANY, "lending"], "lending"),
    ("impact-product-and-connection", ["impact", COMPANY, "dashboard", "--connection", ACCOUNTING], "--connection"),
    ("impact-bad-connection", ["impact", COMPANY, "--connection", "nope"], "nope"),
    ("history-unknown-company", ["history", UNKNOWN], UNKNOWN),
    ("hold-release-unknown", ["hold", "release", "4242"], "4242"),
    ("hold-release-zero", ["hold", "release", "0"], "0"),
    ("hold-release-before-placed", ["hold", "release", "1", "--at", "2026-11-01T00:00:00Z"], "2026-11-01T00:00:00Z"),
    ("hold-add-unknown-data-type", ["hold", "add", COMPANY, "--data-type", "invoicez", "--reason", "audit"],
     "invoicez"),
    ("hold-add-unknown-company", ["hold", "add", UNKNOWN, "--reason", "audit"], UNKNOWN),
    ("hold-add-blank-reason", ["hold", "add", COMPANY, "--reason", "  "], "--reason"),
    ("hold-list-bad-company", ["hold", "list", "--company", "acme"], "acme"),
]


@pytest.mark.parametrize(("args", "names"), [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_exits_2_naming_the_value_and_writes_nothing(db, args, names):
    before = counts(db)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert names in result.output
    assert "Traceback" not in result.output
    assert counts(db) == before


@pytest.mark.parametrize(
    "args",
    [
        ["grant", UNKNOWN, "dashboard"],
        ["show", UNKNOWN],
        ["grant", COMPANY, "lending", "--connection", UNKNOWN],
        ["disconnect", COMPANY, UNKNOWN, "--yes"],
        ["impact", COMPANY, "--connection", UNKNOWN],
    ],
    ids=["grant-company", "show-company", "grant-connection", "disconnect-connection", "impact-connection"],
)
def test_an_id_the_snapshot_does_not_know_says_how_to_fill_it(db, args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and UNKNOWN in result.output
    assert "consent sync" in result.output


ARGUMENT_ERRORS = [case for case in BAD_INPUT if case[0] in {
    "bad-company-uuid", "bad-connection-uuid", "unknown-product", "unknown-data-type", "undeclared-data-type",
    "bad-channel", "bad-at", "bad-at-month", "bad-as-of", "disconnect-bad-uuid", "impact-bad-connection",
    "hold-release-zero", "hold-add-unknown-data-type", "hold-add-blank-reason", "hold-list-bad-company",
}]


@pytest.mark.parametrize(
    ("args", "names"), [case[1:] for case in ARGUMENT_ERRORS], ids=[case[0] for case in ARGUMENT_ERRORS]
)
def test_bad_arguments_are_refused_before_the_database_is_opened(tmp_path, monkeypatch, args, names):
    database = tmp_path / "never.db"
    monkeypatch.setenv("CONSENT_DATABASE_URL", f"sqlite:///{database}")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and names in result.output, result.output
    assert not database.exists()


def test_grant_records_the_defaults_and_history_is_a_json_array(db):
    consent = ok_json(["grant", COMPANY, "lending", "--connection", ACCOUNTING, "--connection", BANK,
                       "--actor", "ui:jane", "--channel", "ui", "--wording-version", "lending-2026-10",
                       "--at", LATER])
    assert consent["status"] == "active" and consent["connections"] == sorted([ACCOUNTING, BANK])
    assert "banking-transactions" in consent["data_types"]

    events = ok_json(["history", COMPANY])
    assert isinstance(events, list) and [e["event_type"] for e in events] == ["granted", "granted"]
    assert {"event_id", "consent_id", "product", "event_type", "data_types", "connection_ids", "wording_version",
            "actor", "channel", "reason", "at", "recorded_at"} <= set(events[0])
    first, second = events
    assert first["product"] == "dashboard" and first["data_types"] == DASHBOARD
    assert first["connection_ids"] == [ACCOUNTING]  # the default: Linked connections carrying the types
    assert first["wording_version"] == f"catalog-{load_catalog().version}" and first["channel"] == "cli"
    assert first["actor"].startswith("cli:") and first["at"] == GRANTED
    assert (second["actor"], second["channel"], second["wording_version"], second["at"]) == (
        "ui:jane", "ui", "lending-2026-10", "2026-11-02T09:00:00Z"
    )
    assert all(key == key.lower() and "-" not in key for event in events for key in event)


def test_impact_json_shape_matches_what_revoke_does(db):
    ok(["grant", COMPANY, "lending", "--at", LATER])
    preview = ok_json(["impact", COMPANY, "lending", "--at", "2026-11-03T00:00:00Z"])
    assert {"company_id", "product", "delete", "keep", "connections_losing_all_consent"} <= set(preview)
    assert (preview["company_id"], preview["product"]) == (COMPANY, "lending")
    deleted = {(r["connection_id"], r["data_type"]): r["due_at"] for r in preview["delete"]}
    assert deleted[(ACCOUNTING, "balanceSheet")] == "2026-12-03T00:00:00Z"  # lending keeps data 30 days
    assert deleted[(BANK, "banking-transactions")] == "2026-12-03T00:00:00Z"
    kept = {(r["connection_id"], r["data_type"]): r["needed_by"] for r in preview["keep"]}
    assert kept == {(ACCOUNTING, t): ["dashboard"] for t in DASHBOARD}
    assert preview["connections_losing_all_consent"] == [BANK]

    disconnect = ok_json(["impact", COMPANY, "--connection", BANK, "--at", "2026-11-03T00:00:00Z"])
    assert disconnect["connection_id"] == BANK and {r["connection_id"] for r in disconnect["delete"]} == {BANK}

    done = ok_json(["revoke", COMPANY, "lending", "--yes", "--reason", "customer asked", "--at",
                    "2026-11-03T00:00:00Z"])
    assert done == preview  # the preview is exactly what happens
    assert ok_json(["history", COMPANY])[-1]["reason"] == "customer asked"


def test_revoke_asks_on_a_terminal(db, monkeypatch):
    monkeypatch.setattr(cli.ledger, "_interactive", lambda: True)
    before = counts(db)
    declined = runner.invoke(app, ["revoke", COMPANY, "dashboard", "--at", LATER], input="n\n")
    assert declined.exit_code == 1 and "nothing was changed" in declined.output
    assert "invoices" in declined.output  # the impact came first
    assert counts(db) == before
    accepted = runner.invoke(app, ["revoke", COMPANY, "dashboard", "--at", LATER], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "revoked 'dashboard'" in accepted.output
    assert ok_json(["show", COMPANY])["consents"][0]["status"] == "revoked"


def test_show_as_of_reconstructs_the_past(db):
    ok(["extend", COMPANY, "dashboard", "--data-type", "payments", "--at", LATER])
    ok(["revoke", COMPANY, "dashboard", "--yes", "--at", "2026-11-03T00:00:00Z"])
    now = ok_json(["show", COMPANY])
    assert set(now) >= {"company_id", "consents", "entitlements"}
    assert now["consents"][0]["status"] == "revoked" and now["entitlements"] == []
    then = ok_json(["show", COMPANY, "--as-of", "2026-11-02T10:00:00Z"])
    (consent,) = then["consents"]
    assert consent["status"] == "active" and "payments" in consent["data_types"]
    assert {(e["connection_id"], e["data_type"]) for e in then["entitlements"]} == {
        (ACCOUNTING, t) for t in [*DASHBOARD, "payments"]
    }
    before = ok_json(["show", COMPANY, "--as-of", "2026-11-01T00:00:00Z"])
    assert before["consents"] == [] and before["entitlements"] == []


def test_legal_holds_add_list_release(db):
    placed = ok_json(["hold", "add", COMPANY, "--data-type", "invoices", "--reason", "litigation 2026-17",
                      "--actor", "legal:amy", "--at", LATER])
    assert {"hold_id", "company_id", "data_type", "reason", "placed_by", "placed_at", "released_at"} <= set(placed)
    assert (placed["data_type"], placed["placed_by"], placed["released_at"]) == ("invoices", "legal:amy", None)
    whole = ok_json(["hold", "add", COMPANY, "--reason", "regulator request", "--at", LATER])
    assert whole["data_type"] is None and whole["placed_by"].startswith("cli:")

    listed = ok_json(["hold", "list"])
    assert [h["hold_id"] for h in listed] == [1, placed["hold_id"], whole["hold_id"]]  # 1: the fixture's
    assert ok_json(["hold", "list", "--company", OTHER]) == []

    released = ok_json(["hold", "release", str(placed["hold_id"]), "--at", "2026-11-05T00:00:00Z"])
    assert released["released_at"] == "2026-11-05T00:00:00Z"
    assert [h["hold_id"] for h in ok_json(["hold", "list", "--company", COMPANY])] == [1, whole["hold_id"]]
    assert len(ok_json(["hold", "list", "--all"])) == 3
    again = runner.invoke(app, ["hold", "release", str(placed["hold_id"])])
    assert again.exit_code == 2 and str(placed["hold_id"]) in again.output
    # holds never touch consent
    assert [e["event_type"] for e in ok_json(["history", COMPANY])] == ["granted"]


def test_human_output_is_short_tables(db):
    ok(["grant", COMPANY, "lending", "--at", LATER])
    shown = ok(["show", COMPANY])
    assert "dashboard" in shown and "lending" in shown and "entitlements" in shown
    preview = ok(["impact", COMPANY, "lending", "--at", "2026-11-03T00:00:00Z"])
    assert "2026-12-03T00:00:00Z" in preview and "needed_by" in preview and "dashboard" in preview
    assert "granted" in ok(["history", COMPANY])
    assert "audit 2026" in ok(["hold", "list"])
    ok(["hold", "release", "1", "--at", LATER])
    assert "no legal holds" in ok(["hold", "list"])


def test_every_ledger_command_has_help():
    for command in (["grant"], ["extend"], ["reconfirm"], ["revoke"], ["disconnect"], ["impact"], ["show"],
                    ["history"], ["hold", "add"], ["hold", "release"], ["hold", "list"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, (command, result.output)
