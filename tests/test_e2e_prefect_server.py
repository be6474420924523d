"""End to end: a real `prefect server start` (own home and port), `python -m deployments.serve --no-server`
against it (which starts its own sandbox), deployments triggered and checked through the Prefect REST API.

Not the session `prefect_harness`: everything here talks to its own server over HTTP, and the test process's
Prefect settings are never used (no Prefect client in this process).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.processes import healthy, running, wait_for
from deployments.serve import server_environment
from deployments.specs import deployment_specs

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
NOW = "2026-11-01T12:00:00Z"
WEBHOOK_SECRET = "whsec_ZTJlLXdlYmhvb2stc2VjcmV0LWZvci10ZXN0cw=="
RUN_TIMEOUT_SECONDS = 120.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any PREFECT_/CONSENT_ setting (the suite's own point at the harness), plus
    an isolated PREFECT_HOME and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CONSENT_"))}
    return {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _kill_leftovers(marker: str) -> list[int]:
    """SIGKILL every process whose command line contains `marker`; their pids."""
    killed = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if marker in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return killed


class RetryOn503(httpx.HTTPTransport):
    """Retries what the Prefect server answers 503 to (SQLite busy or locked), as Prefect's client does."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(8):
            response = super().handle_request(request)
            if response.status_code != 503:
                break
            response.close()
            time.sleep(min(0.25 * 2**attempt, 4.0))
        return response


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """A real Prefect server on a free port with its own PREFECT_HOME (SQLite); yields its API URL."""
    port = _free_port()
    log = home / "server.log"
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with running(argv, log, server_environment(port, _clean_env(home))) as server:  # as deployments.serve starts it
        api = f"http://127.0.0.1:{port}/api"
        wait_for(f"{api}/health", server, log, healthy)
        yield api


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as api:
        yield api


@dataclass
class Served:
    api: str
    http: httpx.Client
    log: Path
    home: Path
    env: dict[str, str]
    webhooks: str = ""
    consent_api: str = ""


@pytest.fixture(scope="module")
def served(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`python -m deployments.serve --no-server` on that server, with a temp consent database and its own
    sandbox; yields once every prefect.yaml deployment exists. Stopping it must stop its sandbox too."""
    home = tmp_path_factory.mktemp("serve")
    sandbox_port, webhook_port, api_port = _free_port(), _free_port(), _free_port()
    env = _clean_env(
        home / "prefect-home",
        PREFECT_API_URL=prefect_api,
        PREFECT_RUNNER_POLL_FREQUENCY="1",  # pick up a triggered run within a second, not ten
        CONSENT_DATABASE_URL=f"sqlite:///{home / 'consent.db'}",
        CONSENT_NOTIFY_FILE=str(home / "notifications.jsonl"),
        CONSENT_CODAT_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    log = home / "serve.log"
    argv = [sys.executable, "-m", "deployments.serve", "--no-server", "--sandbox-port", str(sandbox_port),
            "--webhook-port", str(webhook_port), "--api-port", str(api_port), "--api-workers", "1",
            "--log-dir", str(home / "logs")]
    expected = {spec["name"] for spec in deployment_specs()}
    leftovers: list[int] = []
    http = httpx.Client(base_url=prefect_api, timeout=30, transport=RetryOn503())
    try:
        with running(argv, log, env) as serve, http:
            deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
            while _deployment_names(http) < expected:
                assert serve.poll() is None, f"serve exited with {serve.returncode}:\n{_tail(log)}"
                assert time.monotonic() < deadline, f"deployments not served in time:\n{_tail(log)}"
                time.sleep(0.5)
            yield Served(prefect_api, http, log, home, env, f"http://127.0.0.1:{webhook_port}/webhooks/codat",
                         f"http://127.0.0.1:{api_port}")
    finally:
        leftovers = _kill_leftovers(f"sandbox serve --host 127.0.0.1 --port {sandbox_port}")
        leftovers += _kill_leftovers(f"webhooks serve --host 127.0.0.1 --port {webhook_port}")
        leftovers += _kill_leftovers(f"api serve --host 127.0.0.1 --port {api_port}")
    assert not leftovers, f"serve left its sandbox or receiver running (killed {leftovers}):\n{_tail(log)}"


def _deployment_names(http: httpx.Client) -> set[str]:
    response = http.post("/deployments/filter", json={})
    response.raise_for_status()
    return {d["name"] for d in response.json()}


def _run_deployment(served: Served, name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """`prefect deployment run name/name --param k=<json>` as an operator types it (flow and deployment share
    the name); waits for the run's end."""
    argv = [sys.executable, "-m", "prefect", "deployment", "run", f"{name}/{name}"]
    for key, value in parameters.items():
        argv += ["--param", f"{key}={json.dumps(value)}"]
    done = subprocess.run(argv, env=served.env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_id,) = re.findall(r"UUID: ([0-9a-f-]{36})", done.stdout)
    return _finished(served, run_id)


def _finished(served: Served, run_id: str) -> dict[str, Any]:
    """Flow run `run_id` once it has ended."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while True:
        response = served.http.get(f"/flow_runs/{run_id}")
        response.raise_for_status()
        run = response.json()
        if run["state"] and run["state"]["type"] in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"run {run_id} is {run['state']}:\n{_tail(served.log)}"
        time.sleep(0.5)


def _artifacts(served: Served, run_id: str) -> dict[str, dict[str, Any]]:
    response = served.http.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    response.raise_for_status()
    return {a["key"]: a for a in response.json() if a["key"]}


def test_the_deployments_of_prefect_yaml_are_served_with_their_schedules_and_the_ui_answers(served):
    response = served.http.post("/deployments/filter", json={})
    response.raise_for_status()
    deployments = {d["name"]: d for d in response.json()}
    for spec in deployment_specs():
        deployment = deployments[spec["name"]]
        assert not deployment["paused"]
        assert set(deployment["tags"]) == set(spec["tags"])
        assert deployment["parameters"] == spec["parameters"]
        assert [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in deployment["schedules"]] == [
            (s["cron"], s["timezone"]) for s in spec["schedules"]
        ]
    options = deployments["retention-enforcement"]["concurrency_options"]
    assert options["collision_strategy"] == "CANCEL_NEW"
    assert httpx.get(served.api.removesuffix("/api") + "/", timeout=30).status_code == 200


def test_serve_writes_what_a_second_terminal_needs_to_an_owner_only_file_and_never_prints_the_key(served):
    env_file = served.home / "serve.env"  # beside --log-dir, as .consent/serve.env beside .consent/logs
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines()
        if line.startswith("export ")
    )
    assert exported["PREFECT_API_URL"] == served.api and exported["CONSENT_API_URL"] == served.consent_api
    assert exported["CONSENT_DATABASE_URL"] == served.env["CONSENT_DATABASE_URL"]
    assert exported["CONSENT_CODAT_BASE_URL"].startswith("http://127.0.0.1:")
    key = exported["CONSENT_CODAT_API_KEY"]
    headers = {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}  # Codat's: the key alone
    response = httpx.get(f"{exported['CONSENT_CODAT_BASE_URL']}/companies", params={"pageSize": 1}, headers=headers,
                         timeout=30)
    assert response.status_code == 200, response.text
    printed = served.log.read_text()
    assert f"source {env_file}" in printed and key not in printed


def test_an_expiry_scan_run_completes_with_its_artifacts(served):
    run = _run_deployment(served, "connection-expiry-scan", {"now": NOW})

    assert run["state"]["type"] == "COMPLETED", (run["state"], _tail(served.log))
    assert run["name"] == "expiry-scan-2026-11-01-manual"  # `prefect deployment run`: an operator's
    artifacts = _artifacts(served, run["id"])
    assert {"expiry-attention", "expiry-summary"} <= set(artifacts)
    assert artifacts["expiry-attention"]["type"] == "table"
    summary = artifacts["expiry-summary"]
    assert summary["type"] == "markdown" and "Connection expiry scan, 2026-11-01T12:00:00Z" in summary["data"]
    classes = summary["data"].split("| class | connections |")[1].split("\n\n")[0]
    counts = [line.split("|") for line in classes.splitlines() if line.startswith("| ")]
    assert sum(int(row[2]) for row in counts) > 0  # connections read from the sandbox serve started


def test_a_reconciliation_run_completes_with_its_artifacts(served):
    run = _run_deployment(served, "consent-reconciliation", {"dry_run": True})

    assert run["state"]["type"] == "COMPLETED", (run["state"], _tail(served.log))
    artifacts = _artifacts(served, run["id"])
    assert {"reconciliation-findings", "reconciliation-remediations", "reconciliation-summary"} <= set(artifacts)
    assert "# Consent reconciliation" in artifacts["reconciliation-summary"]["data"]
    findings = served.http.get(f"/artifacts/{artifacts['reconciliation-findings']['id']}")
    findings.raise_for_status()
    assert findings.json()["type"] == "table" and isinstance(json.loads(findings.json()["data"]), list)


def test_a_retention_dry_run_completes(served):
    run = _run_deployment(served, "retention-enforcement", {"dry_run": True})

    assert run["state"]["type"] == "COMPLETED", (run["state"], _tail(served.log))
    # Prefect's own state name, which the UI's default run filters list; the message says it was a dry run
    assert run["state"]["name"] == "Completed" and run["state"]["message"].startswith("Dry run: ")
    assert run["name"].endswith("-manual-dry-run") and "dry-run" in run["tags"]
    assert "retention-summary" in _artifacts(served, run["id"])


def _automations(served: Served) -> dict[str, dict[str, Any]]:
    response = served.http.post("/automations/filter", json={})
    response.raise_for_status()
    return {a["name"]: a for a in response.json()}


def _eventually(check, what: str, served: Served, timeout: float = 60.0) -> Any:
    """Poll `check()` until it returns something truthy; fail with `what` and serve's log after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s:\n{_tail(served.log)}"
        time.sleep(0.5)
    return found


def test_a_backfill_via_the_deployment_creates_one_run_per_slice_once_and_they_complete(served):
    argv = [str(Path(sys.executable).with_name("consent")), "backfill", "reconcile", "--start",
            "2026-10-01T00:00:00Z", "--end", "2026-10-03T00:00:00Z", "--slice-days", "1", "--via-deployment",
            "--json"]

    def backfill() -> list[dict[str, Any]]:
        done = subprocess.run(argv, env=served.env, cwd=ROOT, capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    created = backfill()
    assert [(r["window_start"], r["window_end"]) for r in created] == [
        ("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z"), ("2026-10-02T00:00:00Z", "2026-10-03T00:00:00Z"),
    ]
    assert [r["flow_run_id"] for r in backfill()] == [r["flow_run_id"] for r in created]  # a rerun adds none
    for row in created:
        run = _finished(served, row["flow_run_id"])
        assert run["state"]["type"] == "COMPLETED", (run["state"], _tail(served.log))
        assert "backfill" in run["tags"]
        assert run["name"] == f"reconcile-{row['window_start'][:13].replace(':', '')}00-to-" + (
            row["window_end"][:13].replace(":", "") + "00-backfill"
        )


def test_a_failed_run_alerts_the_operators_through_the_failure_automation(served):
    automation = _automations(served)["consent-flow-run-failed"]
    assert automation["enabled"]
    assert automation["trigger"]["expect"] == ["prefect.flow-run.Failed"]
    assert automation["actions"][0]["type"] == "send-notification"

    # a window that ends before it starts: the flow refuses it and the run fails
    run = _run_deployment(served, "consent-reconciliation", {
        "window_start": "2026-11-02T00:00:00Z", "window_end": "2026-11-01T00:00:00Z",
    })

    assert run["state"]["type"] == "FAILED"
    inbox = served.home / "alerts.jsonl"

    def alerted() -> list[dict[str, Any]]:
        lines = inbox.read_text().splitlines() if inbox.exists() else []
        return [alert for alert in map(json.loads, lines) if run["name"] in alert["text"]]

    (alert,) = _eventually(alerted, f"no alert for the failed run {run['name']}", served)
    assert alert["title"] == f"consent-lifecycle: consent-reconciliation run {run['name']} failed"
    assert "is not before window_end" in alert["text"]
    # a link to the run's page in the UI of the server (PREFECT_UI_URL, as deployments.serve sets it), not "None"
    assert f"{served.api.removesuffix('/api')}/runs/flow-run/{run['id']}" in alert["text"].split()


def _consent(served: Served, *args: str) -> str:
    """The `consent` CLI as an operator runs it, with serve's database and PREFECT_API_URL; its stdout."""
    argv = [str(Path(sys.executable).with_name("consent")), *args]
    done = subprocess.run(argv, env=served.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _planned_runs(served: Served, company: str) -> list[dict[str, Any]]:
    """The retention-enforcement runs planning `company`'s deletions."""
    response = served.http.post("/flow_runs/filter", json={
        "flow_runs": {"tags": {"all_": ["consent"]}}, "deployments": {"name": {"any_": ["retention-enforcement"]}},
    })
    response.raise_for_status()
    return [r for r in response.json() if r["parameters"].get("company_ids") == [company]]


def _accounting_company(served: Served, offset: int) -> str:
    with sqlite3.connect(served.home / "consent.db") as db:
        (company,) = db.execute(
            "SELECT company_id FROM connections WHERE source_type = 'Accounting' AND status = 'Linked' "
            "ORDER BY company_id LIMIT 1 OFFSET ?", (offset,)
        ).fetchone()
    return company


@pytest.fixture(scope="module")
def scanned(served: Served) -> Served:
    """`served` once an expiry scan has filled its snapshot (the revocations below need companies): one scan
    for the module, not one per test."""
    assert _run_deployment(served, "connection-expiry-scan", {})["state"]["type"] == "COMPLETED"
    return served


def test_a_revocation_plans_that_companys_deletions_within_seconds(scanned):
    served = scanned
    company = _accounting_company(served, 0)
    trigger = _automations(served)["plan-deletions-on-revocation"]
    assert set(trigger["trigger"]["expect"]) == {"consent.revoked", "consent.disconnected"}

    _consent(served, "grant", company, "dashboard")
    revoked_at = time.monotonic()
    _consent(served, "revoke", company, "dashboard", "--yes")
    (run,) = _eventually(lambda: _planned_runs(served, company), f"no retention run for company {company}", served,
                         timeout=30)
    assert run["parameters"]["dry_run"] is True
    run = _finished(served, run["id"])
    seconds = time.monotonic() - revoked_at
    assert run["state"]["name"] == "Completed", (run["state"], seconds)
    with sqlite3.connect(served.home / "consent.db") as db:
        (name,) = db.execute("SELECT name FROM companies WHERE id = ?", (company,)).fetchone()
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")  # the company's name says which company
    assert run["state"]["message"].startswith("Dry run: ") and run["name"].endswith(f"-revoked-{slug}-dry-run")
    assert {"dry-run", "revoked"} <= set(run["tags"])
    planned = json.loads(_artifacts(served, run["id"])["retention-planned"]["data"])
    assert planned and {item["company_id"] for item in planned} == {company}


def test_a_product_revoking_through_the_served_consent_api_plans_the_deletions_too(scanned):
    served = scanned
    company = _accounting_company(served, 1)
    key = _consent(served, "api-keys", "create", "--product", "dashboard").strip().splitlines()[-1]
    with httpx.Client(base_url=served.consent_api, headers={"Authorization": f"Bearer {key}"}, timeout=30) as product:
        assert product.post(f"/v1/companies/{company}/consents/dashboard").status_code == 201
        revoked = product.post(f"/v1/companies/{company}/consents/dashboard/revoke", json={"reason": "churned"})
        assert revoked.status_code == 200, revoked.text
    (run,) = _eventually(lambda: _planned_runs(served, company), f"no retention run for company {company}", served,
                         timeout=30)
    assert _finished(served, run["id"])["state"]["type"] == "COMPLETED"


def test_a_webhook_delivery_is_processed_within_seconds_through_the_trigger(served):
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    trigger = _automations(served)["process-codat-webhooks"]
    assert trigger["trigger"]["expect"] == ["consent.codat.events-received"]
    body = json.dumps({"id": "e2e-1", "eventType": "company.created", "generatedDate": NOW,
                       "payload": {"id": "c-e2e", "name": "Acme"}})
    moment = datetime.now(UTC).replace(microsecond=0)
    headers = {"webhook-id": "e2e-delivery-1", "webhook-timestamp": str(int(moment.timestamp())),
               "webhook-signature": Webhook(WEBHOOK_SECRET).sign("e2e-delivery-1", moment, body)}
    response = httpx.post(served.webhooks, content=body, headers=headers, timeout=30)
    assert response.json()["status"] == "stored", response.text

    def done() -> bool:
        with sqlite3.connect(served.home / "consent.db") as db:
            return db.execute("SELECT status FROM codat_events WHERE id = 'e2e-delivery-1'").fetchone() == ("done",)

    _eventually(done, "the delivery was not processed", served, timeout=60)

    def started_by_the_webhook() -> list[dict[str, Any]]:
        response = served.http.post("/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["webhook"]}}})
        response.raise_for_status()
        return response.json()

    runs = _eventually(started_by_the_webhook, "no codat-events run tagged webhook", served, timeout=30)
    assert all(r["name"].startswith("codat-events-") and r["name"].endswith("-webhook") for r in runs)


def test_prefect_deploy_all_from_the_repository_registers_every_deployment_and_the_trigger(tmp_path):
    """What a worker setup does instead of `make serve`: a work pool, `prefect deploy --all`, no prompt."""
    with prefect_server(tmp_path / "server") as api:
        env = _clean_env(tmp_path / "client", PREFECT_API_URL=api)

        def prefect(*args: str) -> str:
            done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        prefect("work-pool", "create", "consent-process", "--type", "process")
        prefect("deploy", "--all")
        with httpx.Client(base_url=api, timeout=30, transport=RetryOn503()) as http:
            deployments = http.post("/deployments/filter", json={}).json()
            automations = http.post("/automations/filter", json={}).json()

    by_name = {d["name"]: d for d in deployments}
    assert set(by_name) == {spec["name"] for spec in deployment_specs()}
    assert {d["work_pool_name"] for d in deployments} == {"consent-process"}
    assert by_name["retention-enforcement"]["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert {a["name"] for a in automations} == {"plan-deletions-on-revocation", "process-codat-webhooks"}


# -- what the operator sees, in a real browser (Chromium via Playwright: tests/fixtures_browser.py) ------------

#: the deployments with a dry run, and the columns each one's table artifact leads with (what, how urgent, when)
DRY_RUN_DEPLOYMENTS = {
    "connection-expiry-scan": {"now": NOW},
    "consent-reconciliation": {},
    "retention-enforcement": {},
}
LEADING_COLUMNS = {
    "expiry-attention": ["expiry_class", "expires_at", "threshold_days", "company"],
    "reconciliation-findings": ["kind", "findings", "company", "company_id"],
    "retention-planned": ["due_at", "scope", "data_type", "company", "status"],
}


def _ui(served: Served) -> str:
    return served.api.removesuffix("/api")


def _deployment_runs(served: Served, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    response = served.http.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [deployment["id"]]}}})
    response.raise_for_status()
    return response.json()


def _dry_and_real_runs(served: Served) -> dict[str, dict[bool, dict[str, Any]]]:
    """A finished dry and real run of each DRY_RUN_DEPLOYMENTS deployment: those earlier tests made, else new
    ones through the API, in two waves (retention refuses a second run at once; the real reconciliation and
    retention of one company only, after a real scan filled the snapshot). A real run may end Failed (the
    retention cap): it is a run the page must list all the same."""
    response = served.http.post("/deployments/filter", json={})
    response.raise_for_status()
    deployments = {d["name"]: d for d in response.json() if d["name"] in DRY_RUN_DEPLOYMENTS}
    found: dict[str, dict[bool, dict[str, Any]]] = {name: {} for name in deployments}
    for name, deployment in deployments.items():
        for run in _deployment_runs(served, deployment):
            if run["state"]["type"] in {"COMPLETED", "FAILED"} and "window_start" not in run["parameters"]:
                found[name].setdefault(bool(run["parameters"].get("dry_run")), run)

    def create(wave: list[tuple[str, bool]], **extra: Any) -> None:
        created = []
        for name, dry_run in wave:
            if dry_run in found[name]:
                continue
            body = {"parameters": {**DRY_RUN_DEPLOYMENTS[name], **extra, "dry_run": dry_run}}
            response = served.http.post(f"/deployments/{deployments[name]['id']}/create_flow_run", json=body)
            response.raise_for_status()
            created.append((name, dry_run, response.json()["id"]))
        for name, dry_run, run_id in created:
            found[name][dry_run] = run = _finished(served, run_id)
            assert run["state"]["type"] in {"COMPLETED", "FAILED"}, (run["state"], _tail(served.log))

    create([("connection-expiry-scan", True), ("connection-expiry-scan", False), ("consent-reconciliation", True),
            ("retention-enforcement", True)])
    create([("consent-reconciliation", False), ("retention-enforcement", False)],
           company_ids=[_accounting_company(served, 2)])  # a company no other test revokes
    return {name: found[name] for name in DRY_RUN_DEPLOYMENTS}


@pytest.mark.browser
def test_in_a_browser_each_deployment_page_lists_its_dry_and_real_runs(served, page):
    runs = _dry_and_real_runs(served)
    deployments = {d["name"]: d for d in served.http.post("/deployments/filter", json={}).json()}

    for name, by_kind in runs.items():
        page.goto(f"{_ui(served)}/deployments/deployment/{deployments[name]['id']}")
        for dry_run, run in by_kind.items():
            # the page's own default filter ("All except scheduled"); the search box past its first page
            page.get_by_placeholder("Search by run name").fill(run["name"])
            page.get_by_text(run["name"], exact=True).first.wait_for(state="visible")
            assert run["name"].endswith("-dry-run") == dry_run
        assert "No runs found" not in page.inner_text("body")


def _latest_table(served: Served, key: str) -> dict[str, Any] | None:
    response = served.http.post("/artifacts/filter", json={
        "artifacts": {"key": {"any_": [key]}, "type": {"any_": ["table"]}}, "sort": "CREATED_DESC", "limit": 1,
    })
    response.raise_for_status()
    return next(iter(response.json()), None)


@pytest.mark.browser
def test_in_a_browser_each_table_artifact_leads_with_what_how_urgent_and_when(served, page):
    _dry_and_real_runs(served)
    if _latest_table(served, "retention-planned") is None:  # a revocation plans deletions: a table to show
        company = _accounting_company(served, 3)
        _consent(served, "grant", company, "dashboard")
        _consent(served, "revoke", company, "dashboard", "--yes")
        _eventually(lambda: _latest_table(served, "retention-planned"), "no retention-planned table", served)

    for key, leading in LEADING_COLUMNS.items():
        artifact = _latest_table(served, key)
        assert artifact is not None, f"no {key} table"
        page.goto(f"{_ui(served)}/artifacts/artifact/{artifact['id']}")
        page.locator("th").first.wait_for(state="visible")
        headers = [text.strip() for text in page.locator("th").all_inner_texts()]
        assert headers[: len(leading)] == leading, (key, headers)
        assert "key" not in headers[: len(leading) + 2]  # the long item key is last, not in the way


@pytest.mark.browser
def test_in_a_browser_the_failure_alert_links_to_the_failed_runs_page(served, page):
    inbox = served.home / "alerts.jsonl"
    deployment = next(d for d in served.http.post("/deployments/filter", json={}).json()
                      if d["name"] == "consent-reconciliation")
    response = served.http.post(f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": {
        "window_start": "2026-11-03T00:00:00Z", "window_end": "2026-11-02T00:00:00Z"}})  # refused: it fails
    response.raise_for_status()
    run = _finished(served, response.json()["id"])
    assert run["state"]["type"] == "FAILED"

    def alerted() -> list[str]:
        lines = inbox.read_text().splitlines() if inbox.exists() else []
        texts = [json.loads(line)["text"] for line in lines]
        return [link for text in texts for link in re.findall(r"https?://\S+", text) if run["id"] in link]

    (link,) = _eventually(alerted, f"no alert linking to the failed run {run['name']}", served)
    page.goto(link)
    page.get_by_text(run["name"], exact=True).first.wait_for(state="visible")
    page.get_by_text("Failed", exact=True).first.wait_for(state="visible")
