"""Secrets and isolation (DESIGN rules 3 and 6, and one company's command touching only that company):

(a) the Codat key and the webhook secrets never appear in output, logs, Prefect artifacts or logs, reprs;
(b) a command for company A leaves company B's rows byte-identical and never asks the database about B;
(c) the ledger's events refuse UPDATE/DELETE on SQLite and PostgreSQL, after real CLI writes (the trigger
    itself, table by table, is tested in tests/test_db.py::test_ledger_refuses_update_and_delete);
(d) SQL is built from bound parameters only: no `text(...)`/`execute(...)` of a formatted string.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import logging
import secrets as real_secrets
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, MetaData, delete, event, select, text, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from codat_sandbox import SandboxConfig, running_sandbox
from consent_lifecycle import cli
from consent_lifecycle.codat import CodatClient, CodatError, RetryPolicy
from consent_lifecycle.db import make_engine
from consent_lifecycle.db.models import ConsentEvent
from consent_lifecycle.settings import Settings
from consent_lifecycle.snapshot import observe
from consent_lifecycle.snapshot.store import apply_observation
from consent_lifecycle.webhook_receiver import create_receiver
from tests.fixtures_sandbox import sandbox_client
from tests.test_cli_ledger import (
    ACCOUNTING,
    BANK,
    COMPANY,
    GRANTED,
    OTHER,
    OTHER_ACCOUNTING,
    SEEN,
    SHOP,
    codat_company,
)

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

CODAT_KEY = "ck-Zebra-Quokka-7f3a9e1d5b2c"
CODAT_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"codat-webhook-Narwhal-31415926").decode()
NOTIFY_SECRET = "notify-Okapi-Secret-2718281828"


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def needles(*keys: str) -> list[str]:
    """Each secret, and the forms it travels in: base64 (the Basic header), the header value itself."""
    found = []
    for key in keys:
        found += [key, b64(key), f"Basic {b64(key)}"]
    found.append(CODAT_WEBHOOK_SECRET.removeprefix("whsec_"))
    return found


class Collect(logging.Handler):
    """Every log record, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def _prefect_records(since: datetime) -> tuple[list[str], int, int]:
    """Artifacts, logs, flow and task run parameters of every flow run started since `since`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)), limit=200
        )
        ids = [run.id for run in runs]

        async def every(read: Any, **filters: Any) -> list[Any]:
            found: list[Any] = []
            while batch := await read(**filters, limit=200, offset=len(found)):
                found += batch
            return found

        artifacts = await every(client.read_artifacts,
                                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
        logs = await every(client.read_logs, log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        tasks = await every(client.read_task_runs, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    texts = [repr(run.parameters) + repr(run.state) + run.name for run in runs]
    texts += [a.model_dump_json() for a in artifacts]
    texts += [log.message for log in logs]
    texts += [repr(task.task_inputs) + repr(task.state) + task.name for task in tasks]
    return texts, len(artifacts), len(ids)


@pytest.mark.prefect
def test_secrets_never_appear_in_output_logs_artifacts_or_reprs(tmp_path, monkeypatch, capfd, webhook,
                                                                 prefect_harness):
    started = datetime.now(UTC)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONSENT_DATABASE_URL", f"sqlite:///{tmp_path / 'consent.db'}")
    monkeypatch.setenv("CONSENT_CODAT_API_KEY", CODAT_KEY)
    monkeypatch.setenv("CONSENT_CODAT_WEBHOOK_SECRET", CODAT_WEBHOOK_SECRET)
    monkeypatch.setenv("CONSENT_NOTIFY_WEBHOOK_SECRET", NOTIFY_SECRET)
    monkeypatch.setenv("CONSENT_NOTIFY_WEBHOOK_URL", webhook.url)  # notices are signed with NOTIFY_SECRET
    monkeypatch.delenv("CONSENT_CATALOG", raising=False)
    demo_keys: list[str] = []

    def spy(n: int) -> str:  # the demo's own sandbox key: recorded, not replaced
        demo_keys.append(real_secrets.token_urlsafe(n))
        return demo_keys[-1]

    monkeypatch.setattr(cli.demo, "secrets", SimpleNamespace(token_urlsafe=spy))
    collect = Collect()
    watched = [logging.getLogger(), logging.getLogger("prefect"), logging.getLogger("consent_lifecycle"),
               logging.getLogger("httpx"), logging.getLogger("httpcore")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(collect)
    for logger in watched[2:]:
        logger.setLevel(logging.DEBUG)
    texts: list[str] = []
    try:
        demo = runner.invoke(cli.app, ["demo", "--companies", "6", "--seed", "3"])
        assert demo.exit_code == 0, demo.output
        assert "6 companies" in demo.output and webhook.received  # the notices went out, signed
        texts.append(demo.output)

        with running_sandbox(SandboxConfig(api_key=CODAT_KEY, companies=4, seed=5)) as codat:
            monkeypatch.setenv("CONSENT_CODAT_BASE_URL", codat.base_url)
            with sandbox_client(codat) as admin:
                admin.post("/_sandbox/faults", json={"rate_5xx": 0.4, "seed": 4}).raise_for_status()
            retried = runner.invoke(cli.app, ["sync"])  # 5xx retried inside the flow's tasks, then succeeds
            assert retried.exit_code == 0, retried.output
            monkeypatch.setenv("CONSENT_CODAT_API_KEY", CODAT_KEY + "-revoked")
            refused = runner.invoke(cli.app, ["sync"])  # 401: the flow fails
            assert refused.exit_code == 1 and "401" in refused.output, refused.output
            texts += [retried.output, refused.output]
            monkeypatch.setenv("CONSENT_CODAT_API_KEY", CODAT_KEY)

            with sandbox_client(codat) as admin:
                admin.post("/_sandbox/faults", json={"rate_5xx": 1.0}).raise_for_status()
            settings = Settings()

            async def failing() -> list[str]:
                async with CodatClient.from_settings(
                    settings, retry=RetryPolicy(initial_delay=0.01, max_attempts=3)
                ) as client:
                    seen = [repr(client), str(client), repr(vars(client)), repr(client._http.auth),
                            repr(client._http.headers)]
                    with pytest.raises(CodatError) as raised:
                        await client.list_companies()
                    return [*seen, str(raised.value), repr(raised.value), repr(raised.value.__cause__)]

            texts += asyncio.run(failing())
        assert any("gave up after 3 attempts" in t for t in texts)
        texts += [repr(settings), str(settings), repr(settings.model_dump()), settings.model_dump_json()]

        received = _webhook_receiver_answers(settings)
        texts += received
        assert any("401" in t for t in received)
    finally:
        for logger, level in zip(watched, levels, strict=True):
            logger.removeHandler(collect)
            logger.setLevel(level)
    captured = capfd.readouterr()
    texts += [captured.out, captured.err, *collect.lines]
    assert any("retry" in line for line in collect.lines)  # the retries were logged...
    prefect_texts, artifacts, runs = asyncio.run(_prefect_records(started))
    assert artifacts >= 3 and runs >= 4, (artifacts, runs)  # demo: scan + reconcile; two syncs
    texts += prefect_texts
    texts += [repr(r) for r in webhook.received]
    texts += [repr(rows) for rows in _all_rows(make_engine(f"sqlite:///{tmp_path / 'consent.db'}")).values()]

    assert len(demo_keys) == 1
    haystack = "\n".join(texts)
    for needle in [*needles(CODAT_KEY, CODAT_KEY + "-revoked", demo_keys[0]), NOTIFY_SECRET, CODAT_WEBHOOK_SECRET]:
        assert needle not in haystack, needle  # ...and no secret, in any form, anywhere


def _webhook_receiver_answers(settings: Settings) -> list[str]:
    """The Codat webhook receiver, configured with the secret, answering forged and malformed deliveries."""
    from codat_sandbox.runner import serving

    assert settings.codat_webhook_secret is not None
    engine = make_engine(settings.database_url)
    app = create_receiver(settings.codat_webhook_secret, engine)
    now = str(int(datetime.now(UTC).timestamp()))
    answers = []
    with serving(app) as base_url, httpx.Client(base_url=base_url) as http:
        for headers in ({"webhook-id": "msg_1", "webhook-timestamp": now, "webhook-signature": "v1,Zm9yZ2Vk"},
                        {"webhook-id": "msg_2", "webhook-timestamp": "0", "webhook-signature": "v1,Zm9yZ2Vk"}, {}):
            response = http.post("/webhooks/codat", content=b'{"eventType": "x"}', headers=headers)
            answers.append(f"{response.status_code} {response.text}")
    engine.dispose()
    return answers


def _all_rows(engine: Engine) -> dict[str, list[Any]]:
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as db:
        return {name: sorted(map(repr, db.execute(select(t)).all())) for name, t in meta.tables.items()}


# -- (b) one company's commands leave another's rows alone ----------------------------------------------------


def _rows_of(engine: Engine, company_id: str, connection_ids: set[str]) -> dict[str, list[str]]:
    """Every row, in every table, that belongs to the company (by company_id, id or connection_id)."""
    meta = MetaData()
    meta.reflect(engine)
    found = {}
    with engine.connect() as db:
        for name, t in meta.tables.items():
            rows = []
            for row in db.execute(select(t)).mappings():
                if (row.get("company_id") == company_id or (name == "companies" and row["id"] == company_id)
                        or row.get("connection_id") in connection_ids
                        or (name == "connections" and row["id"] in connection_ids)):
                    rows.append(repr(dict(row)))
            found[name] = sorted(rows)
    return found


@pytest.fixture
def two_companies(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONSENT_DATABASE_URL", db_url)
    monkeypatch.delenv("CONSENT_CATALOG", raising=False)
    engine = make_engine(db_url)
    apply_observation(engine, observe([
        codat_company(COMPANY, [(ACCOUNTING, "Accounting", "Linked"), (BANK, "Banking", "Linked"),
                                (SHOP, "Commerce", "Linked")]),
        codat_company(OTHER, [(OTHER_ACCOUNTING, "Accounting", "Linked")]),
    ]), SEEN)
    for args in (["grant", OTHER, "dashboard", "--at", GRANTED],
                 ["hold", "add", OTHER, "--reason", "B's audit", "--at", GRANTED],
                 ["access", "record", "--product", "dashboard", "--company", OTHER, "--data-type", "invoices",
                  "--at", GRANTED]):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 0, result.output
    yield engine
    engine.dispose()


A_COMMANDS = [
    ["grant", COMPANY, "dashboard", "--at", "2026-11-02T09:00:00Z"],
    ["extend", COMPANY, "dashboard", "--data-type", "payments", "--at", "2026-11-02T10:00:00Z"],
    ["grant", COMPANY, "lending", "--at", "2026-11-02T11:00:00Z"],
    ["reconfirm", COMPANY, "lending", "--at", "2026-11-02T12:00:00Z"],
    ["hold", "add", COMPANY, "--reason", "A's audit", "--at", "2026-11-02T12:30:00Z"],
    ["access", "record", "--product", "lending", "--company", COMPANY, "--data-type", "invoices",
     "--at", "2026-11-02T13:00:00Z"],
    ["access", "check", "--product", "lending", "--company", COMPANY, "--data-type", "invoices"],
    ["show", COMPANY], ["history", COMPANY], ["impact", COMPANY, "lending", "--at", "2026-11-03T00:00:00Z"],
    ["revoke", COMPANY, "lending", "--yes", "--at", "2026-11-03T00:00:00Z"],
    ["disconnect", COMPANY, ACCOUNTING, "--yes", "--at", "2026-11-03T01:00:00Z"],
]


def test_commands_for_one_company_never_touch_anothers_rows(two_companies: Engine) -> None:
    b_before = _rows_of(two_companies, OTHER, {OTHER_ACCOUNTING})
    a_before = _rows_of(two_companies, COMPANY, {ACCOUNTING, BANK, SHOP})
    assert b_before["consent_events"] and b_before["legal_holds"] and b_before["access_records"]
    statements: list[tuple[str, str]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, repr(parameters)))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        for args in A_COMMANDS:
            result = runner.invoke(cli.app, args)
            assert result.exit_code in (0, 1) and not (  # access check exits 1 for "not permitted"
                result.exception and not isinstance(result.exception, SystemExit)), (args, result.output)
            assert OTHER not in result.output and OTHER_ACCOUNTING not in result.output, (args, result.output)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert _rows_of(two_companies, OTHER, {OTHER_ACCOUNTING}) == b_before
    assert _rows_of(two_companies, COMPANY, {ACCOUNTING, BANK, SHOP}) != a_before  # A's commands did write
    assert statements
    for statement, parameters in statements:  # no query ever named B
        assert OTHER not in statement + parameters and OTHER_ACCOUNTING not in statement + parameters, statement


# -- (c) the ledger is append-only in the database itself ----------------------------------------------------


def test_the_ledger_refuses_update_and_delete_after_real_writes(two_companies: Engine) -> None:
    """See also tests/test_db.py::test_ledger_refuses_update_and_delete (per statement, and through the ORM)."""
    engine = two_companies
    revoke = runner.invoke(cli.app, ["revoke", OTHER, "dashboard", "--yes", "--at", "2026-11-02T00:00:00Z"])
    assert revoke.exit_code == 0, revoke.output

    def events() -> list[Any]:
        with engine.connect() as db:
            return db.execute(select(ConsentEvent.__table__).order_by(ConsentEvent.id)).all()

    before = events()
    assert [e.event_type for e in before] == ["granted", "revoked"]
    attempts = [
        update(ConsentEvent).where(ConsentEvent.id == before[1].id).values(event_type="granted"),
        update(ConsentEvent).values(reason="rewritten history"),
        delete(ConsentEvent).where(ConsentEvent.id == before[1].id),
        delete(ConsentEvent),
    ]
    if engine.dialect.name == "postgresql":
        attempts.append(text("TRUNCATE consent_events CASCADE"))
    for statement in attempts:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as db:
            db.execute(statement)
    assert events() == before
    history = runner.invoke(cli.app, ["history", OTHER, "--json"])
    assert history.exit_code == 0 and '"revoked"' in history.output


# -- (d) SQL from bound parameters only ------------------------------------------------------------------------

#: calls that take SQL text: SQLAlchemy's text(), and execute()-style calls (DBAPI cursors, alembic's op)
SQL_CALLS = {"text", "literal_column", "DDL", "execute", "executemany", "executescript", "exec_driver_sql"}
#: (file, start of the offending line): each a formatted SQL string that cannot take a bound parameter
ALLOWED = {
    # PRAGMA takes no parameters; the value is forced to int first
    ("consent_lifecycle/db/engine.py", 'cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")'),
    # a module constant, an int
    ("consent_lifecycle/db/engine.py", 'cursor.execute(f"PRAGMA mmap_size = {SQLITE_MMAP_BYTES}")'),
    # DDL in the first migration: the trigger's message and the operations are module constants
    ("consent_lifecycle/migrations/versions/0001_initial.py", "op.execute("),
    # the sandbox's own SQLite store: table and column names from literal tuples in the code; values bound (?)
    ("codat_sandbox/store.py", 'db.execute(f"DROP TABLE IF EXISTS {table}")'),
    ("codat_sandbox/store.py", 'db.execute(f"DELETE FROM {table} WHERE {column} = ?", (company_id,))'),
}


def _formatted(node: ast.expr | None) -> bool:
    """A string built at run time: f-string with a value, .format(), % or + on a string."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return any(isinstance(side, (ast.Constant, ast.JoinedStr)) and not isinstance(getattr(side, "value", ""), int)
                   for side in (node.left, node.right)) or _formatted(node.left) or _formatted(node.right)
    return False


def formatted_sql(source: str) -> list[tuple[int, str]]:
    """(line, source line) of each SQL call whose SQL is a formatted string, directly or through a local name."""
    tree = ast.parse(source)
    assigned: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, []).append(node.value)
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in SQL_CALLS:
            continue
        sql = node.args[0]
        candidates = assigned.get(sql.id, []) if isinstance(sql, ast.Name) else [sql]
        if any(_formatted(candidate) for candidate in candidates):
            found.append((node.lineno, lines[node.lineno - 1].strip()))
    return found


def test_the_checker_finds_formatted_sql() -> None:
    bad = (
        'db.execute(text(f"SELECT * FROM consents WHERE company_id = \'{company_id}\'"))\n'
        'db.execute(text("SELECT * FROM t WHERE id = %s" % value))\n'
        'query = "DELETE FROM t WHERE id = {}".format(value)\n'
        "db.execute(text(query))\n"
        'cursor.execute("DELETE FROM t WHERE id = " + value)\n'
    )
    assert sorted(line for line, _ in formatted_sql(bad)) == [1, 2, 4, 5]
    good = 'db.execute(text("SELECT 1 WHERE id = :id"), {"id": value})\ncursor.execute("PRAGMA x = ON")\n'
    assert formatted_sql(good) == []


def test_sql_is_built_from_bound_parameters_only() -> None:
    found = set()
    for path in sorted(p for package in ("consent_lifecycle", "codat_sandbox") for p in (ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for _, line in formatted_sql(path.read_text()):
            found.add((relative, line))
    unexpected = {(f, line) for f, line in found if not any(f == a and line.startswith(s) for a, s in ALLOWED)}
    assert not unexpected, f"SQL built from a formatted string (use bound parameters): {sorted(unexpected)}"
    stale = {(a, s) for a, s in ALLOWED if not any(f == a and line.startswith(s) for f, line in found)}
    assert not stale, f"allow-list entries that match nothing any more: {sorted(stale)}"
