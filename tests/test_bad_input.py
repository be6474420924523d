"""Bad input, all in one table (DESIGN rule 5): CLI arguments, catalog files and Codat responses.

Every case asserts what a user notices: a clear error naming the bad value (no traceback), exit code 2 for
the command line, and nothing written (every table of the consent database holds the same rows, counted and
compared, before and after). Codat responses are served over real loopback HTTP by a tiny ASGI app (the
bodies Codat's sandbox cannot be made to send); the client must raise a `CodatError` naming the field or
value, and the cases marked `flow` also run the snapshot-sync or expiry-scan flow through the command line
and the Prefect harness: the flow run fails with that message and the command exits 1 (Codat failed, not
the user's input; README: exit 2 is for the user's bad input). Per-topic tests elsewhere (test_cli.py,
test_cli_ledger.py, test_catalog.py, test_codat_client.py) go deeper on each part; this table is the
inventory.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import Engine, MetaData, func, inspect, select, table
from typer.testing import CliRunner

from codat_sandbox.runner import serving
from consent_lifecycle.cli import app
from consent_lifecycle.codat import CodatClient, CodatError, RetryPolicy
from consent_lifecycle.db import make_engine
from consent_lifecycle.db.migrate import upgrade
from consent_lifecycle.snapshot import observe
from consent_lifecycle.snapshot.store import apply_observation
from tests.test_catalog import _duplicate_product, _set, base_document, dump
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
FAST = RetryPolicy(initial_delay=0.01, max_delay=0.05, max_attempts=2)


# -- the database every case runs against, and what "nothing written" means ------------------------------


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in every table of the database (alembic_version included)."""
    with engine.connect() as db:
        return {
            name: db.execute(select(func.count()).select_from(table(name))).scalar_one()
            for name in inspect(engine).get_table_names()
        }


def table_rows(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: an UPDATE changes this even when the counts stay the same."""
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as db:
        return {name: sorted(map(repr, db.execute(select(t)).all())) for name, t in meta.tables.items()}


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with two companies in the snapshot, a consent and a legal hold (built once)."""
    path = tmp_path_factory.mktemp("template") / "consent.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    apply_observation(
        engine,
        observe([
            codat_company(COMPANY, [(ACCOUNTING, "Accounting", "Linked"), (BANK, "Banking", "Linked"),
                                    (SHOP, "Commerce", "Linked")]),
            codat_company(OTHER, [(OTHER_ACCOUNTING, "Accounting", "Linked")]),
        ]),
        SEEN,
    )
    engine.dispose()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONSENT_DATABASE_URL", url)
        env.delenv("CONSENT_CATALOG", raising=False)
        for args in (["grant", COMPANY, "dashboard", "--at", GRANTED],
                     ["hold", "add", COMPANY, "--reason", "audit 2026", "--at", GRANTED]):
            result = runner.invoke(app, args)
            assert result.exit_code == 0, result.output
    return path


@dataclass
class World:
    engine: Engine
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest


@pytest.fixture
def world(template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          request: pytest.FixtureRequest) -> Iterator[World]:
    """A copy of the template database; settings pointing at it and at nothing else."""
    database = tmp_path / "consent.db"
    shutil.copy(template_db, database)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONSENT_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("CONSENT_NOTIFY_FILE", str(tmp_path / "notices.jsonl"))
    for name in ("CONSENT_CATALOG", "CONSENT_CODAT_BASE_URL", "CONSENT_CODAT_API_KEY", "CONSENT_LOCAL_STORE_TABLES",
                 "CONSENT_NOTIFY_WEBHOOK_URL", "CONSENT_CODAT_MAX_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    engine = make_engine(f"sqlite:///{database}")
    yield World(engine, tmp_path, monkeypatch, request)
    engine.dispose()


def _refused(result: Any, names: list[str], code: int = 2) -> str:
    output = result.output
    assert result.exit_code == code, output
    assert "Traceback" not in output and not (
        result.exception and not isinstance(result.exception, SystemExit)
    ), repr(result.exception)
    for name in names:
        assert name in output, (name, output)
    return output


# -- CLI arguments and settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cli:
    args: list[str]
    names: list[str]
    env: dict[str, str] = field(default_factory=dict)
    hidden: list[str] = field(default_factory=list)  # must NOT appear (a password in a URL)

    kind = "cli"

    def check(self, world: World) -> None:
        for name, value in self.env.items():
            world.monkeypatch.setenv(name, value)
        output = _refused(runner.invoke(app, self.args), self.names)
        for secret in self.hidden:
            assert secret not in output


# -- catalog files: the configured catalog is bad, so a grant is refused before anything is written -----------


@dataclass(frozen=True)
class CatalogFile:
    content: str | bytes | Callable[[dict[str, Any]], None] | None  # None: no such file
    names: list[str]

    kind = "catalog"

    def check(self, world: World) -> None:
        path = world.tmp_path / "bad-catalog.toml"
        if isinstance(self.content, bytes):
            path.write_bytes(self.content)
        elif isinstance(self.content, str):
            path.write_text(self.content)
        elif self.content is not None:
            document = base_document()
            self.content(document)
            path.write_text(dump(document))
        world.monkeypatch.setenv("CONSENT_CATALOG", str(path))
        for args in (["grant", COMPANY, "lending", "--at", "2026-11-02T09:00:00Z"], ["catalog", "show"]):
            _refused(runner.invoke(app, args), [str(path), *self.names])


def _set_required(key: str, required: list[str]) -> Callable[[dict[str, Any]], None]:
    return _set(f"product:{key}.required", required)


# -- Codat responses over real HTTP -----------------------------------------------------------------------

Answer = Callable[[str, dict[str, str]], tuple[int, bytes, str]]


class CodatDouble:
    """A tiny ASGI app standing in for Codat: every request is answered by `answer(path, query)`."""

    def __init__(self) -> None:
        self.answer: Answer = lambda path, query: (404, b"{}", "application/json")
        self.base_url = ""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        query = dict(parse_qsl(scope["query_string"].decode()))
        status, body, content_type = self.answer(scope["path"], query)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode())]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def codat_double() -> Iterator[CodatDouble]:
    double = CodatDouble()
    with serving(double) as base_url:  # type: ignore[arg-type]  # any ASGI app
        double.base_url = base_url
        yield double


def uid(n: int, kind: int = 1) -> str:
    return f"{kind:x}{n:07x}-0000-4000-8000-000000000000"


def connection(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "id": uid(n, 2), "integrationId": uid(n, 3), "sourceId": uid(n, 4), "platformName": "Xero",
        "linkUrl": "https://link-api.codat.io/x/start", "status": "Linked", "created": "2026-06-01T00:00:00Z",
        "sourceType": "Accounting",
    } | changes


def company(n: int, connections: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    return {
        "id": uid(n), "name": f"Company {n}", "redirect": "https://link.codat.io/company/x",
        "created": "2026-05-01T00:00:00Z", "dataConnections": [connection(n)] if connections is None else connections,
    } | changes


def page(results: list[Any], number: int, size: int, total: int) -> dict[str, Any]:
    return {"results": results, "pageNumber": number, "pageSize": size, "totalResults": total,
            "_links": {"self": {"href": "/companies"}, "current": {"href": "/companies"}}}


def paged(items: list[Any], *, total: Callable[[int], int] | None = None, size: int | None = None,
          hold: int | None = None) -> Answer:
    """Codat's paging of `items` (honouring page and pageSize), with optional lies: the `total` a page
    reports, the pageSize it claims (`size`), or how many items a page holds at most (`hold`)."""

    def answer(path: str, query: dict[str, str]) -> tuple[int, bytes, str]:
        number, asked = int(query.get("page", 1)), int(query.get("pageSize", 100))
        served = hold if hold is not None else asked
        start = (number - 1) * served
        body = page(items[start:start + served], number, asked if size is None else size,
                    len(items) if total is None else total(number))
        return 200, json.dumps(body).encode(), "application/json"

    return answer


def raw(body: bytes | str | Any, status: int = 200, content_type: str = "application/json") -> Answer:
    """The same body for every request (JSON-encoded unless bytes or str)."""
    content = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return lambda path, query: (status, content, content_type)


CALLS: dict[str, Callable[[CodatClient], Any]] = {
    "companies": lambda codat: codat.list_companies(),
    "sync-settings": lambda codat: codat.get_sync_settings(COMPANY),
    "pulls": lambda codat: codat.list_pull_operations(COMPANY),
    "data-status": lambda codat: codat.get_data_status(COMPANY),
}


@dataclass(frozen=True)
class CodatBody:
    answer: Answer
    names: list[str]
    call: str = "companies"
    client_options: dict[str, Any] = field(default_factory=dict)
    flow: str | None = None  # also run this command (a flow) against it: "sync" or "expiry-scan"
    flow_names: list[str] | None = None  # what the flow's failure names, if not `names`

    kind = "codat"

    def check(self, world: World) -> None:
        double: CodatDouble = world.request.getfixturevalue("codat_double")
        double.answer = self.answer

        async def call() -> Any:
            async with CodatClient(double.base_url, "double-key", retry=FAST, **self.client_options) as codat:
                return await CALLS[self.call](codat)

        with pytest.raises(CodatError) as raised:
            asyncio.run(call())
        for name in self.names:
            assert name in str(raised.value), (name, str(raised.value))
        if self.flow:
            self._through_flow(world, double)

    def _through_flow(self, world: World, double: CodatDouble) -> None:
        world.request.getfixturevalue("prefect_harness")
        world.monkeypatch.setenv("CONSENT_CODAT_BASE_URL", double.base_url)
        world.monkeypatch.setenv("CONSENT_CODAT_API_KEY", "double-key")
        names = self.flow_names or self.names
        command, flow_name = {"sync": (["sync"], "snapshot-sync"),
                              "expiry-scan": (["run", "expiry-scan"], "connection-expiry-scan")}[self.flow]
        result = runner.invoke(app, command)
        # Prefect logs the failed task run (with its traceback) for the operator; the command's own last word
        # is the clear message, and it exits 1 (Codat failed) rather than crashing
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.exception, result.output)
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("error: Codat GET /companies"), result.output
        for name in names:
            assert name in last, (name, last)
        state = asyncio.run(_latest_state(flow_name))
        assert state.is_failed(), state
        for name in names:
            assert name in (state.message or ""), (name, state.message)


async def _latest_state(flow_name: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            sort=FlowRunSort.START_TIME_DESC, limit=1,
        )
    return runs[0].state


# -- the table ----------------------------------------------------------------------------------------------

WINDOW = ["--start", "2026-11-01T00:00:00Z", "--end", "2026-11-02T00:00:00Z"]
THREE = [company(n) for n in range(3)]

CASES = [
    # CLI arguments
    pytest.param(Cli(["grant", "not-a-uuid", "dashboard"], ["not-a-uuid"]), id="cli-company-not-a-uuid"),
    pytest.param(Cli(["run", "reconcile", "--company", "12345"], ["12345"]), id="cli-reconcile-company-not-a-uuid"),
    pytest.param(Cli(["grant", COMPANY, "lendng"], ["'lendng'", "did you mean 'lending'"]), id="cli-unknown-product"),
    pytest.param(Cli(["access", "record", "--product", "crm", "--company", COMPANY, "--data-type", "invoices"],
                     ["'crm'"]), id="cli-access-unknown-product"),
    pytest.param(Cli(["extend", COMPANY, "dashboard", "--data-type", "invoicez"], ["'invoicez'"]),
                 id="cli-unknown-data-type"),
    pytest.param(Cli(["access", "record", "--product", "lending", "--company", COMPANY, "--data-type", "invoicez"],
                     ["'invoicez'"]), id="cli-access-unknown-data-type"),
    pytest.param(Cli(["grant", COMPANY, "lending", "--at", "2026-02-30T10:00:00Z"], ["2026-02-30T10:00:00Z"]),
                 id="cli-bad-iso-time"),
    pytest.param(Cli(["show", COMPANY, "--as-of", "last tuesday"], ["last tuesday"]), id="cli-bad-as-of"),
    pytest.param(Cli(["backfill", "reconcile", "--start", "2026-11-02T00:00:00Z", "--end", "2026-11-01T00:00:00Z"],
                     ["--start 2026-11-02T00:00:00Z is not before --end 2026-11-01T00:00:00Z"]),
                 id="cli-start-after-end"),
    pytest.param(Cli(["backfill", "reconcile", "--start", "0001-01-01T00:00:00Z", "--end", "9999-12-31T00:00:00Z",
                      "--slice-days", "366"], ["9999-12-31T00:00:00Z", "366-day slices"]),
                 id="cli-window-past-year-9999"),
    pytest.param(Cli(["revoke", COMPANY, "dashboard"], ["--yes", "stdin is not a terminal"]),
                 id="cli-revoke-without-yes-on-a-pipe"),
    pytest.param(Cli(["backfill", "reconcile", *WINDOW, "--slice-days", "0"], ["0 is not in the range 1..366"]),
                 id="cli-zero-slice-days"),
    pytest.param(Cli(["run", "retention", "--max-deletions", "-1"], ["-1 is not in the range"]),
                 id="cli-negative-max-deletions"),
    pytest.param(Cli(["hold", "release", "0"], ["0 is not in the range"]), id="cli-zero-hold-id"),
    pytest.param(Cli(["hold", "release", "99999999999999999999"], ["99999999999999999999 is not in the range"]),
                 id="cli-hold-id-beyond-64-bits"),
    pytest.param(Cli(["demo", "--companies", "-5"], ["-5 is not in the range"]), id="cli-negative-companies"),
    pytest.param(Cli(["grant", COMPANY, "lending", "--channel", "fax"], ["'fax'"]), id="cli-unknown-channel"),
    pytest.param(Cli(["findings", "list", "--kind", "bogus"], ["'bogus'"]), id="cli-unknown-finding-kind"),
    pytest.param(Cli(["deletions", "list", "--status", "gone"], ["'gone'"]), id="cli-unknown-deletion-status"),
    # settings (environment variables)
    pytest.param(Cli(["sync"], ["codat_max_concurrency", "'0'"], env={"CONSENT_CODAT_MAX_CONCURRENCY": "0"}),
                 id="cli-setting-zero-concurrency"),
    pytest.param(Cli(["run", "retention"], ["local_store_tables"],
                     env={"CONSENT_LOCAL_STORE_TABLES": "{invoices: my_invoices"}), id="cli-setting-not-json"),
    pytest.param(Cli(["grant", COMPANY, "lending"], ["CONSENT_DATABASE_URL", "mysql://app:***@db.internal/consent"],
                     env={"CONSENT_DATABASE_URL": "mysql://app:hunter2@db.internal/consent"}, hidden=["hunter2"]),
                 id="cli-setting-unsupported-database"),
    # catalog files
    pytest.param(CatalogFile(_set_required("lending", ["balanceSheet", "invoicez"]),
                             ["product 'lending'", "unknown data type 'invoicez'"]), id="catalog-unknown-data-type"),
    pytest.param(CatalogFile(_duplicate_product, ["duplicate product 'dashboard'"]), id="catalog-duplicate-product"),
    pytest.param(CatalogFile(_set("product:lending.retention_days", -30), ["retention_days", "got -30"]),
                 id="catalog-negative-retention"),
    pytest.param(CatalogFile(_set("product:lending.retention_days", "30"), ["retention_days", "got '30'"]),
                 id="catalog-retention-as-text"),
    pytest.param(CatalogFile(_set("policy:1.period_days", 0), ["period_days", "got 0"]), id="catalog-zero-period"),
    pytest.param(CatalogFile(_set("policy:1.basis", "reconfirm"), ["unknown basis 'reconfirm'"]),
                 id="catalog-unknown-basis"),
    pytest.param(CatalogFile('version = 1\n[[product]]\nkey = "lending\n', ["malformed TOML", "line 3"]),
                 id="catalog-malformed-toml"),
    pytest.param(CatalogFile(b"version = 1\n\xff\xfe", ["not UTF-8"]), id="catalog-not-utf8"),
    pytest.param(CatalogFile(None, ["catalog file not found"]), id="catalog-missing-file"),
    # Codat responses
    pytest.param(CodatBody(raw("<html>502 Bad Gateway</html>", content_type="text/html"),
                           ["not JSON", "<html>502 Bad Gateway"], flow="sync"), id="codat-not-json"),
    pytest.param(CodatBody(raw(b""), ["not JSON"]), id="codat-empty-body"),
    pytest.param(CodatBody(raw("[" * 100_000 + "]" * 100_000), ["not JSON"]), id="codat-json-nested-too-deep"),
    pytest.param(CodatBody(raw([company(1)]), ["invalid response: body", "got list"]), id="codat-array-not-a-page"),
    pytest.param(CodatBody(paged([{k: v for k, v in company(1).items() if k != "id"}]),
                           ["results.0.id", "Field required"], flow="expiry-scan"), id="codat-missing-required-field"),
    pytest.param(CodatBody(paged([company(1, [connection(1, status="Broken")])]),
                           ["results.0.dataConnections.0.status", "'Broken'"], flow="sync"), id="codat-wrong-enum"),
    pytest.param(CodatBody(paged([company(1, [connection(1, id="conn-1")])]), ["not a uuid: 'conn-1'"]),
                 id="codat-id-not-a-uuid"),
    pytest.param(CodatBody(paged([company(1, [connection(1, created="yesterday")])]), ["'yesterday'"]),
                 id="codat-time-not-iso"),
    pytest.param(CodatBody(paged(THREE, total=lambda n: 4), ["page 1 holds 3 results", "totalResults 4"]),
                 id="codat-truncated-page"),
    # a bad page found by a batch task (after the page count): the flow fails naming the page
    pytest.param(CodatBody(paged(THREE, total=lambda n: 4), ["page 1 holds 3 results", "totalResults 4"],
                           flow="sync"), id="codat-truncated-page-through-sync"),
    pytest.param(CodatBody(paged([*THREE, company(3)], total=lambda n: 3 if n == 1 else 4),
                           ["totalResults changed while paging (3 then [4])"],
                           client_options={"page_size": 2}), id="codat-total-results-changes-between-pages"),
    pytest.param(CodatBody(paged(THREE, hold=2, size=2), ["page 1 holds 2 results", "totalResults 3 at pageSize 5000"],
                           flow="sync", flow_names=["page 1 holds 2 results", "totalResults 3 at pageSize 1"]),
                 id="codat-page-shorter-than-asked-for"),
    pytest.param(CodatBody(paged(THREE, size=2), ["says pageSize 2", "pageSize 5000 was asked for"]),
                 id="codat-page-size-not-the-one-asked-for"),
    pytest.param(CodatBody(paged([], size=0, total=lambda n: 3), ["pageSize", "got 0"], flow="sync"),
                 id="codat-page-size-zero"),
    pytest.param(CodatBody(paged([], total=lambda n: -1), ["totalResults", "got -1"], flow="sync"),
                 id="codat-negative-total-results"),
    pytest.param(CodatBody(raw({"companyId": COMPANY, "overridesDefaults": True, "settings": [
        {"dataType": "invoicez", "fetchOnFirstLink": True, "syncSchedule": 24, "syncOrder": 0}]}),
                           ["settings.0.dataType", "'invoicez'"], call="sync-settings"),
                 id="codat-sync-setting-unknown-data-type"),
    pytest.param(CodatBody(paged([{"id": uid(9), "companyId": COMPANY, "connectionId": uid(9, 2),
                                   "dataType": "invoices", "status": "Done", "requested": "2026-11-01T00:00:00Z",
                                   "progress": 100, "isCompleted": True, "isErrored": False}]),
                           ["results.0.status", "'Done'"], call="pulls"), id="codat-pull-status-wrong-enum"),
    pytest.param(CodatBody(raw({"invoices": {"dataType": "invoices", "currentStatus": "Finished"}}),
                           ["invoices.currentStatus", "'Finished'"], call="data-status"),
                 id="codat-data-status-wrong-enum"),
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_naming_the_value_and_writes_nothing(case: Any, world: World) -> None:
    before_counts, before_rows = row_counts(world.engine), table_rows(world.engine)
    assert before_counts["consent_events"] == 1 and before_counts["companies"] == 2  # something to protect
    case.check(world)
    assert row_counts(world.engine) == before_counts
    assert table_rows(world.engine) == before_rows


def test_the_table_covers_every_kind_of_bad_input() -> None:
    kinds = [param.values[0].kind for param in CASES]
    assert len(CASES) >= 25
    assert {kind: kinds.count(kind) for kind in set(kinds)}.keys() == {"cli", "catalog", "codat"}
    assert len({param.id for param in CASES}) == len(CASES)
    assert any(getattr(param.values[0], "flow", None) for param in CASES)
