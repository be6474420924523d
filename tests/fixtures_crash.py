"""Helpers shared by the crash trials (a flow run in a subprocess, SIGKILLed at a random point) and the
fault tests (the same flow with and without injected API faults): not a pytest plugin, imported directly.

- `TRIALS`: how many random-point trials each crash test runs (CONSENT_CRASH_TRIALS, default 3; `make
  soak` runs 20).
- `start` / `kill` / `kill_when` / `run_to_end`: the `consent` command line in a subprocess, against this
  test's database and sandbox (the environment `flow_env` set) and the session's Prefect test server.
- `prepare_retention`: the retention world of the crash and fault tests (consents granted then revoked).
- `grant_reconciliation_consents`: the reconciliation world (a mix of products on the sandbox companies).
- `rows`: a table's rows as plain dicts, in a stable order, minus named columns: for row-for-row compares.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import parse_iso
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.migrate import upgrade
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.retention import store
from flows.connection_expiry_scan import connection_expiry_scan
from tests.fixtures_sandbox import SANDBOX_NOW, sandbox_client

CONSENT = str(Path(sys.executable).with_name("consent"))
TRIALS = int(os.environ.get("CONSENT_CRASH_TRIALS", "3"))
DELETE_CONNECTION = "DELETE /companies/{companyId}/connections/{connectionId}"
QUEUE_PULL = "POST /companies/{companyId}/data/queue/{dataType}"
#: retention's moment of execution in the crash and fault tests: past every revoked product's retention
RETENTION_LATER = SANDBOX_NOW + timedelta(days=31)


# -- the command line in a subprocess ---------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment (the test's database, sandbox, notify target) plus the Prefect server."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **extra}


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


def kill(process: subprocess.Popen) -> int | None:
    """SIGKILL `process` (if it still runs) and reap it; its return code (-9 when the kill hit it)."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    return process.wait(timeout=60)


def kill_when(
    process: subprocess.Popen, condition: Callable[[], bool], *, timeout: float = 120.0, poll: float = 0.01
) -> int | None:
    """SIGKILL `process` as soon as `condition()` holds (polled); its return code (0 if it ended first)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline and not condition():
        time.sleep(poll)
    return kill(process)


def run_to_end(command: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    finished = subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


# -- the sandbox's request counters ---------------------------------------------------------------


def requests_by_status(sandbox) -> dict[str, dict[int, int]]:
    """{route template: {status: count}} of the API requests the sandbox answered since its counters were
    cleared (a faulted request counts with its fault's status)."""
    with sandbox_client(sandbox) as http:
        by_status = http.get("/_sandbox/requests").json()["by_status"]
    return {route: {int(code): n for code, n in codes.items()} for route, codes in by_status.items()}


def requests_total(sandbox) -> int:
    with sandbox_client(sandbox) as http:
        return http.get("/_sandbox/requests").json()["total"]


def clear_requests(sandbox) -> None:
    with sandbox_client(sandbox) as http:
        http.delete("/_sandbox/requests").raise_for_status()


def set_faults(sandbox, **settings: Any) -> None:
    with sandbox_client(sandbox) as http:
        http.post("/_sandbox/faults", json=settings).raise_for_status()


# -- worlds -----------------------------------------------------------------------------------------


def sandbox_companies(sandbox) -> list[dict]:
    with sandbox_client(sandbox) as http:
        return http.get("/companies", params={"pageSize": 100}).json()["results"]


def prepare_retention(sandbox, url: str) -> dict[str, int]:
    """Lending granted on every Linked accounting connection, then revoked; rows in a local table
    (`store_balance_sheets`, to map with CONSENT_LOCAL_STORE_TABLES); items planned, due at RETENTION_LATER.

    Leaves 150 ms of latency on each API request (deletions take time) and the request counters cleared."""
    upgrade(url)
    asyncio.run(connection_expiry_scan(now=SANDBOX_NOW))
    engine = make_engine(url)
    ledger = Ledger(engine, load_catalog())
    companies = sandbox_companies(sandbox)
    set_faults(sandbox, latency_ms=150)
    clear_requests(sandbox)
    with engine.begin() as db:
        db.execute(text("CREATE TABLE store_balance_sheets (company_id TEXT, body TEXT)"))
    for company in companies:
        accounting = [c for c in company["dataConnections"] if c["sourceType"] == "Accounting"
                      and c["status"] == "Linked"]
        if not accounting:
            continue
        linked = parse_iso(accounting[0]["created"])
        ledger.grant(company["id"], "lending", connections=[accounting[0]["id"]], wording_version="v1",
                     actor="c", channel="ui", at=linked)
        ledger.revoke(company["id"], "lending", actor="c", channel="ui", at=SANDBOX_NOW, reason="crash test")
        with engine.begin() as db:
            db.execute(text("INSERT INTO store_balance_sheets VALUES (:c, 'x')"), {"c": company["id"]})
    store.plan(engine, load_catalog(), RETENTION_LATER)
    due = store.due_items(engine, RETENTION_LATER)
    connections = [i for i in store.items(engine, status="planned") if i["scope"] == "codat_connection"]
    engine.dispose()
    return {"due": len(due), "connections": len(connections)}


def grant_reconciliation_consents(sandbox, engine: Engine) -> None:
    """Consents over the sandbox's companies (the snapshot must know them): Dashboard on the first Linked
    accounting connection of each company; Lending as well, on it and the first Linked bank, at every
    other company that has both. Each granted when its connection was first linked."""
    ledger = Ledger(engine, load_catalog())
    for n, company in enumerate(sandbox_companies(sandbox)):
        linked: dict[str, dict] = {}
        for connection in company["dataConnections"]:
            if connection["status"] == "Linked":
                linked.setdefault(connection["sourceType"], connection)
        accounting, bank = linked.get("Accounting"), linked.get("Banking")
        if accounting is None:
            continue
        at = parse_iso(accounting["created"])
        ledger.grant(company["id"], "dashboard", connections=[accounting["id"]], wording_version="v1",
                     actor="customer", channel="ui", at=at)
        if bank is not None and n % 2 == 0:
            ledger.grant(company["id"], "lending", connections=[accounting["id"], bank["id"]],
                         wording_version="v1", actor="customer", channel="ui",
                         at=max(at, parse_iso(bank["created"])))


# -- row-for-row comparison ----------------------------------------------------------------------------


def rows(engine: Engine, table: str, order_by: Iterable[str], exclude: Iterable[str] = ()) -> list[dict]:
    """Every row of `table` as a dict without the `exclude`d columns, ordered by `order_by`."""
    dropped = set(exclude)
    with engine.connect() as db:
        found = db.execute(text(f"SELECT * FROM {table} ORDER BY {', '.join(order_by)}")).mappings().all()
    return [{k: v for k, v in row.items() if k not in dropped} for row in found]
