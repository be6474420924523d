"""Serve every deployment in prefect.yaml from one process, beside a Prefect server and a Codat sandbox.

Usage (from the repository root; `make serve` runs the first line):

    .venv/bin/python -m deployments.serve                  # Prefect server + sandbox + all deployments
    .venv/bin/python -m deployments.serve --port 4300 --sandbox-port 8711
    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m deployments.serve   # an existing server
    CONSENT_CODAT_BASE_URL=https://api.codat.io CONSENT_CODAT_API_KEY=... \
        .venv/bin/python -m deployments.serve                                         # real Codat

What it does, in order:

1. Prefect: unless PREFECT_API_URL is set (or `--no-server`), starts `prefect server start` on 127.0.0.1
   (`--port`, default 4200) and waits for `/api/health`. The server keeps its SQLite database in
   PREFECT_HOME, or uses PostgreSQL when PREFECT_SERVER_DATABASE_CONNECTION_URL is set (inherited).
2. Codat: unless CONSENT_CODAT_BASE_URL is set (or `--no-sandbox`), starts `consent sandbox serve`
   (`--sandbox-port`, default 8710) with the key in CONSENT_CODAT_API_KEY (one is generated if unset), and
   points the flow runs at it.
3. Migrates the consent database (CONSENT_DATABASE_URL).
4. Webhooks in: starts `python -m deployments.webhooks` (`--webhook-port`, default 8720) with
   CONSENT_CODAT_WEBHOOK_SECRET (generated if unset): Codat connection events trigger a targeted expiry
   scan; the sandbox started here is told to send them there. Its `/alerts` inbox (.consent/alerts.jsonl)
   receives the failure alerts unless CONSENT_ALERT_WEBHOOK_URL is set.
5. Automations: the failure alert (deployments/automations.py), and with the deployments their prefect.yaml
   `triggers:` (a revocation or disconnection plans that company's deletions).
6. Serves each deployment of prefect.yaml (schedules, parameters, tags, concurrency limit, triggers) with
   `prefect.serve`: flow runs, scheduled or triggered from the UI or `prefect deployment run`, execute in
   subprocesses of this one. The work pool of prefect.yaml is for `prefect deploy` + a worker; serving
   needs none.

Ctrl-C or SIGTERM stops serving (Prefect pauses the deployments' schedules until they are served again),
then stops the server, the sandbox and the receiver this process started. Their output goes to `--log-dir`.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

if TYPE_CHECKING:  # Prefect is imported only once PREFECT_API_URL is settled: it reads settings at import
    from prefect.deployments.runner import RunnerDeployment

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"
HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 120.0  # a cold Prefect server with a fresh database takes ~15 s on 2 cores
STOP_TIMEOUT_SECONDS = 15.0


# -- subprocesses -----------------------------------------------------------------------------------


@contextmanager
def running(
    argv: list[str], log_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """Run `argv` in its own process group (so Ctrl-C reaches this process first, and stopping ends the
    whole group), output to `log_path`; stop it when the block ends."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, start_new_session=True,
        )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM to the process group of `process`, SIGKILL to it after `timeout` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; end anything it left behind in its group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def wait_for(
    url: str, process: subprocess.Popen, log_path: Path, ready: Callable[[httpx.Response], bool],
    timeout: float = STARTUP_TIMEOUT_SECONDS,
) -> None:
    """Poll GET `url` until `ready(response)`; fail early, with the log's tail, if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[0]} exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            if ready(httpx.get(url, timeout=2.0)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout:.0f} s; see {log_path}:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _require_free(port: int, what: str, hint: str) -> None:
    with socket.socket() as sock:
        if sock.connect_ex((HOST, port)) == 0:
            raise SystemExit(f"port {port} is in use: is {what} already running? {hint}")


def _executable(name: str) -> str:
    """`name` from this interpreter's bin directory (the venv), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name) or name


# -- the Prefect server and the sandbox -------------------------------------------------------------


def start_prefect_server(stack: ExitStack, port: int, log_dir: Path) -> str:
    """Start `prefect server start` on HOST:`port`; returns its API URL once healthy."""
    hint = f"Set PREFECT_API_URL=http://{HOST}:{port}/api to use it, or pass --port."
    _require_free(port, "a Prefect server", hint)
    log_path = log_dir / "prefect-server.log"
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    process = stack.enter_context(running(argv, log_path, env))
    api_url = f"http://{HOST}:{port}/api"
    wait_for(f"{api_url}/health", process, log_path, healthy)
    return api_url


def healthy(response: httpx.Response) -> bool:
    """Whether a Prefect server's `/api/health` answered `true`."""
    return response.status_code == 200 and response.text.strip() == "true"


def start_sandbox(stack: ExitStack, port: int, api_key: str, log_dir: Path) -> str:
    """Start `consent sandbox serve` on HOST:`port` with `api_key` (passed in the environment, not argv);
    returns its base URL once it answers."""
    _require_free(port, "a sandbox", "Set CONSENT_CODAT_BASE_URL to use it, or pass --sandbox-port.")
    log_path = log_dir / "sandbox.log"
    argv = [_executable("consent"), "sandbox", "serve", "--host", HOST, "--port", str(port)]
    env = {**os.environ, "CONSENT_CODAT_API_KEY": api_key}
    process = stack.enter_context(running(argv, log_path, env))
    base_url = f"http://{HOST}:{port}"
    wait_for(f"{base_url}/companies?pageSize=1", process, log_path, lambda r: r.status_code < 500)
    return base_url


def codat_is_configured() -> bool:
    """Whether CONSENT_CODAT_BASE_URL is set (in the environment or `.env`)."""
    from consent_lifecycle.settings import get_settings

    return "codat_base_url" in get_settings().model_fields_set


def sandbox_api_key() -> str:
    """CONSENT_CODAT_API_KEY (environment or `.env`) if set, else a fresh random key."""
    from consent_lifecycle.settings import get_settings

    key = get_settings().codat_api_key
    return key.get_secret_value() if key else secrets.token_urlsafe(24)


def webhook_secret() -> str:
    """CONSENT_CODAT_WEBHOOK_SECRET if set, else a fresh `whsec_` secret (for the sandbox started here)."""
    from consent_lifecycle.settings import get_settings

    secret = get_settings().codat_webhook_secret
    return secret.get_secret_value() if secret else "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def start_receiver(stack: ExitStack, port: int, secret: str, log_dir: Path) -> str:
    """Start the webhook receiver (deployments/webhooks.py) on HOST:`port`; returns its base URL once it
    answers. The secret goes in the environment, never in argv."""
    _require_free(port, "a webhook receiver", "Pass --webhook-port.")
    log_path = log_dir / "webhooks.log"
    argv = [sys.executable, "-m", "deployments.webhooks", "--host", HOST, "--port", str(port),
            "--alerts-file", str(log_dir.parent / "alerts.jsonl")]
    env = {**os.environ, "CONSENT_CODAT_WEBHOOK_SECRET": secret}
    process = stack.enter_context(running(argv, log_path, env))
    base_url = f"http://{HOST}:{port}"
    # any HTTP answer means it listens (GET on a POST route: 405)
    wait_for(f"{base_url}/alerts", process, log_path, lambda r: r.status_code == 405)
    return base_url


def send_sandbox_webhooks(sandbox_url: str, api_key: str, receiver_url: str, secret: str) -> None:
    """Tell the sandbox to sign and send its connection webhooks to the receiver."""
    auth = {"Authorization": "Basic " + base64.b64encode(api_key.encode()).decode()}
    body = {"url": f"{receiver_url}/webhooks/codat", "secret": secret}
    httpx.post(f"{sandbox_url}/_sandbox/webhooks", json=body, headers=auth, timeout=10).raise_for_status()


def migrate_consent_database() -> str:
    """Bring the consent database to the head revision; returns its URL without the password."""
    from sqlalchemy.engine import make_url

    from consent_lifecycle.db.migrate import upgrade
    from consent_lifecycle.settings import get_settings

    url = get_settings().database_url
    upgrade(url)
    return make_url(url).render_as_string(hide_password=True)


# -- deployments from prefect.yaml ------------------------------------------------------------------


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The `deployments:` entries of prefect.yaml."""
    return yaml.safe_load(path.read_text())["deployments"]


def load_flow(entrypoint: str) -> Any:
    """The flow object of an entrypoint `flows/file.py:function` (imported as a module of this repo)."""
    path, _, name = entrypoint.partition(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


def schedule(entry: Mapping[str, Any]) -> Any:
    """A prefect.yaml schedule entry (`cron`/`interval`/`rrule`, `timezone`, `active`, `parameters`, ...) as
    a `prefect.schedules.Schedule`; an unknown key fails here rather than being dropped."""
    from prefect.schedules import Schedule

    fields = dict(entry)
    if isinstance(fields.get("interval"), int | float):
        fields["interval"] = timedelta(seconds=fields["interval"])
    return Schedule(**fields)


def concurrency_limit(value: int | Mapping[str, Any] | None) -> Any:
    """`concurrency_limit` of prefect.yaml: an int, or `{limit, collision_strategy}` (ENQUEUE/CANCEL_NEW)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    return ConcurrencyLimitConfig(**value) if isinstance(value, Mapping) else value


def triggers(name: str, entries: list[Mapping[str, Any]]) -> list[Any]:
    """prefect.yaml `triggers:` of deployment `name`, validated and named as `prefect deploy` does (the
    automations they become are replaced, not duplicated, when the deployment is applied again)."""
    from prefect.events import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(DeploymentTriggerTypes)
    return [
        adapter.validate_python({"name": f"{name}__automation_{i}", **entry})
        for i, entry in enumerate(entries, start=1)
    ]


def build_deployment(spec: Mapping[str, Any]) -> RunnerDeployment:
    """One prefect.yaml entry as a deployment `prefect.serve` can run (its work pool is not used)."""
    return load_flow(spec["entrypoint"]).to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags") or [],
        parameters=spec.get("parameters") or {},
        schedules=[schedule(entry) for entry in spec.get("schedules") or []],
        concurrency_limit=concurrency_limit(spec.get("concurrency_limit")),
        triggers=triggers(spec["name"], spec.get("triggers") or []),
    )


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.serve",
        description="Serve the deployments of prefect.yaml from one process, beside a Prefect server and "
        "a Codat sandbox.",
    )
    parser.add_argument("--no-server", action="store_true",
                        help="start no Prefect server: use PREFECT_API_URL (the environment or the profile)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="start no sandbox: the flows use CONSENT_CODAT_BASE_URL (default: real Codat)")
    parser.add_argument("--port", type=int, default=4200, help="port of the Prefect server (default 4200)")
    parser.add_argument("--sandbox-port", type=int, default=8710, help="port of the sandbox (default 8710)")
    parser.add_argument("--webhook-port", type=int, default=8720,
                        help="port of the webhook receiver and alert inbox (default 8720)")
    parser.add_argument("--log-dir", type=Path, default=Path(".consent/logs"),
                        help="where the server's and the sandbox's output go (default .consent/logs)")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM before the runner installs its own handler: unwind, so the `finally` blocks stop children."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    with ExitStack() as stack:
        try:
            if not args.no_server and not os.environ.get("PREFECT_API_URL"):
                print(f"starting the Prefect server on port {args.port} ...", flush=True)
                os.environ["PREFECT_API_URL"] = start_prefect_server(stack, args.port, args.log_dir)
            sandbox_url = None
            if not args.no_sandbox and not codat_is_configured():
                key = sandbox_api_key()
                sandbox_url = start_sandbox(stack, args.sandbox_port, key, args.log_dir)
                os.environ |= {"CONSENT_CODAT_BASE_URL": sandbox_url, "CONSENT_CODAT_API_KEY": key}
            database = migrate_consent_database()
            secret = webhook_secret()
            receiver_url = start_receiver(stack, args.webhook_port, secret, args.log_dir)
            if sandbox_url:
                send_sandbox_webhooks(sandbox_url, os.environ["CONSENT_CODAT_API_KEY"], receiver_url, secret)
            os.environ.setdefault("CONSENT_ALERT_WEBHOOK_URL", f"{receiver_url}/alerts")
            serve(sandbox_url, database, receiver_url)
        except KeyboardInterrupt:
            pass
        print("stopping ...", flush=True)


def serve(sandbox_url: str | None, database: str, receiver_url: str) -> None:
    """Import Prefect (PREFECT_API_URL is settled now), create the failure alert, print where everything
    is, serve until stopped."""
    import prefect
    from prefect.settings import PREFECT_API_URL
    from prefect.utilities.asyncutils import run_coro_as_sync

    from consent_lifecycle.settings import get_settings
    from deployments.automations import FAILURE_AUTOMATION, ensure_failure_alert

    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise SystemExit("--no-server needs PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    deployments = [build_deployment(spec) for spec in deployment_specs()]
    alert_url = get_settings().alert_webhook_url or f"{receiver_url}/alerts"
    run_coro_as_sync(ensure_failure_alert(alert_url))
    codat = sandbox_url + " (sandbox)" if sandbox_url else get_settings().codat_base_url
    print(f"Prefect UI:   {api_url.removesuffix('/').removesuffix('/api')}", flush=True)
    print(f"Prefect API:  {api_url}", flush=True)
    print(f"Codat:        {codat}", flush=True)
    print(f"Consent DB:   {database}", flush=True)
    print(f"Webhooks in:  {receiver_url}/webhooks/codat", flush=True)
    print(f"Alerts:       {FAILURE_AUTOMATION} -> {alert_url}", flush=True)
    print(f"Serving {len(deployments)} deployments from {PREFECT_YAML}; Ctrl-C stops everything.", flush=True)
    prefect.serve(*deployments)


if __name__ == "__main__":
    main()
