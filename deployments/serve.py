"""Serve every deployment in prefect.yaml from one process, beside a Prefect server and a Codat sandbox.

Usage (from the repository root; `make serve` runs the first line):

    .venv/bin/python -m deployments.serve                  # Prefect server + sandbox + all deployments
    .venv/bin/python -m deployments.serve --port 4300 --sandbox-port 8711
    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m deployments.serve   # an existing server
    CONSENT_CODAT_BASE_URL=https://api.codat.io CONSENT_CODAT_API_KEY=... \
        .venv/bin/python -m deployments.serve                                         # real Codat

What it does, in order:

1. Prefect: unless PREFECT_API_URL is set (or `--no-server`), starts `prefect server start` on 127.0.0.1
   (`--port`, default 4200) with PREFECT_UI_URL set (the failure alert's link to the run) and waits for
   `/api/health`. The server keeps its SQLite database in
   PREFECT_HOME, or uses PostgreSQL when PREFECT_SERVER_DATABASE_CONNECTION_URL is set (inherited).
2. Codat: unless CONSENT_CODAT_BASE_URL is set (or `--no-sandbox`), starts `consent sandbox serve`
   (`--sandbox-port`, default 8710) with the key in CONSENT_CODAT_API_KEY (one is generated if unset) and its
   sync scheduler on, and points the flow runs at it.
3. Migrates the consent database (CONSENT_DATABASE_URL).
4. Webhooks in: starts `consent webhooks serve` (`--webhook-port`, default 8720) with
   CONSENT_CODAT_WEBHOOK_SECRET (generated if unset): Codat events are stored in the inbox and nudge the
   `codat-events` deployment; the sandbox started here is told to send them there. Its `/alerts` inbox (.consent/alerts.jsonl)
   receives the failure alerts unless CONSENT_ALERT_WEBHOOK_URL is set.
5. The Consent API: starts `consent api serve` (`--api-port`, default 8730; `--api-workers`, default 2) on the
   consent database, with the hosted consent journey; revocations made through it reach Prefect as events.
6. Automations: the failure alert (deployments/automations.py), and with the deployments their prefect.yaml
   `triggers:` (a revocation or disconnection plans that company's deletions).
7. Serves each deployment of prefect.yaml (schedules, parameters, tags, concurrency limit, triggers) with
   `prefect.serve`: flow runs, scheduled or triggered from the UI or `prefect deployment run`, execute in
   subprocesses of this one. The work pool of prefect.yaml is for `prefect deploy` + a worker; serving
   needs none.

Then it writes `.consent/serve.env` (beside `--log-dir`; owner-only, mode 0600): `export` lines for another
terminal (`source .consent/serve.env`): PREFECT_API_URL, CONSENT_DATABASE_URL, CONSENT_CODAT_BASE_URL and
the sandbox's CONSENT_CODAT_API_KEY (the key is never printed), CONSENT_API_URL.

Ctrl-C or SIGTERM stops serving (Prefect pauses the deployments' schedules until they are served again),
then stops the server, the sandbox and the receiver this process started. Their output goes to `--log-dir`.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shlex
import signal
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

import httpx

from deployments.processes import HOST, executable, healthy, require_free, running, wait_for
from deployments.specs import PREFECT_YAML, build_deployment, deployment_specs

# -- the Prefect server and the sandbox -------------------------------------------------------------


def server_environment(port: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of the Prefect server on HOST:`port`: `environ` without PREFECT_API_URL, with its UI
    URL and the API URL its UI calls. The server renders `{{ flow_run|ui_url }}` in automations' notifications
    from PREFECT_UI_URL, which it would otherwise infer from a PREFECT_API_URL it does not have: the failure
    alert's link read "None". On any port but 4200 the UI's pages called port 4200 and showed no data."""
    env = {k: v for k, v in environ.items() if k != "PREFECT_API_URL"}
    return {
        **env,
        "PREFECT_UI_URL": env.get("PREFECT_UI_URL") or f"http://{HOST}:{port}",
        # the API the UI's pages call: Prefect derives it from PREFECT_SERVER_API_PORT (4200), not `--port`
        "PREFECT_SERVER_UI_API_URL": env.get("PREFECT_SERVER_UI_API_URL") or f"http://{HOST}:{port}/api",
    }


def start_prefect_server(stack: ExitStack, port: int, log_dir: Path) -> str:
    """Start `prefect server start` on HOST:`port`; returns its API URL once healthy."""
    hint = f"Set PREFECT_API_URL=http://{HOST}:{port}/api to use it, or pass --port."
    require_free(port, "a Prefect server", hint)
    log_path = log_dir / "prefect-server.log"
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]
    process = stack.enter_context(running(argv, log_path, server_environment(port, os.environ)))
    api_url = f"http://{HOST}:{port}/api"
    wait_for(f"{api_url}/health", process, log_path, healthy)
    return api_url


def start_sandbox(stack: ExitStack, port: int, api_key: str, log_dir: Path, companies: int = 50) -> str:
    """Start `consent sandbox serve` on HOST:`port` with `api_key` (passed in the environment, not argv);
    returns its base URL once it answers."""
    require_free(port, "a sandbox", "Set CONSENT_CODAT_BASE_URL to use it, or pass --sandbox-port.")
    log_path = log_dir / "sandbox.log"
    # its sync scheduler on: advancing its clock (POST /_sandbox/clock/advance) runs the companies' syncs,
    # each told to the receiver as read.completed
    argv = [executable("consent"), "sandbox", "serve", "--host", HOST, "--port", str(port), "--sync-scheduler",
            "--companies", str(companies)]
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
    """Start the webhook receiver (`consent webhooks serve`, deployments/webhooks.py) on HOST:`port`;
    returns its base URL once it answers. The secret goes in the environment, never in argv."""
    require_free(port, "a webhook receiver", "Pass --webhook-port.")
    log_path = log_dir / "webhooks.log"
    argv = [executable("consent"), "webhooks", "serve", "--host", HOST, "--port", str(port),
            "--alerts-file", str(log_dir.parent / "alerts.jsonl")]
    env = {**os.environ, "CONSENT_CODAT_WEBHOOK_SECRET": secret}
    process = stack.enter_context(running(argv, log_path, env))
    base_url = f"http://{HOST}:{port}"
    # any HTTP answer means it listens (GET on a POST route: 405)
    wait_for(f"{base_url}/alerts", process, log_path, lambda r: r.status_code == 405)
    return base_url


def start_api(stack: ExitStack, port: int, workers: int, log_dir: Path) -> str:
    """Start the Consent API (`consent api serve`) on HOST:`port`; returns its base URL once it answers."""
    require_free(port, "a Consent API", "Pass --api-port.")
    log_path = log_dir / "api.log"
    argv = [executable("consent"), "api", "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    process = stack.enter_context(running(argv, log_path, dict(os.environ)))
    base_url = f"http://{HOST}:{port}"
    wait_for(f"{base_url}/healthz", process, log_path, lambda r: r.status_code == 200)
    return base_url


def send_sandbox_webhooks(sandbox_url: str, api_key: str, receiver_url: str, secret: str) -> None:
    """Tell the sandbox to sign and send its webhooks to the receiver."""
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


# -- what a second terminal needs -------------------------------------------------------------------


def absolute_database_url(url: str) -> str:
    """`url` with a relative SQLite path made absolute (a second terminal may start elsewhere)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return url
    return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)


def serve_env(variables: Mapping[str, str | None]) -> str:
    """`export NAME=value` lines (shell-quoted) a second terminal can `source`; unset values left out."""
    lines = ["# written by `make serve` (deployments/serve.py) for another terminal: source .consent/serve.env"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in variables.items() if value]
    return "\n".join(lines) + "\n"


def write_serve_env(path: Path, variables: Mapping[str, str | None]) -> Path:
    """Write `serve_env(variables)` to `path`, readable by its owner only (it may hold the sandbox's key: never
    printed or logged, this file is where the operator's own shell gets it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w") as handle:
        handle.write(serve_env(variables))
    return path


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
    parser.add_argument("--sandbox-companies", type=int, default=50, help="companies the sandbox seeds (default 50)")
    parser.add_argument("--webhook-port", type=int, default=8720,
                        help="port of the webhook receiver and alert inbox (default 8720)")
    parser.add_argument("--api-port", type=int, default=8730, help="port of the Consent API (default 8730)")
    parser.add_argument("--api-workers", type=int, default=2, help="worker processes of the Consent API (default 2)")
    parser.add_argument("--log-dir", type=Path, default=Path(".consent/logs"),
                        help="where the server's and the sandbox's output go (default .consent/logs)")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM before the runner installs its own handler: unwind, so the `finally` blocks stop children."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    from consent_lifecycle.settings import get_settings

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
                sandbox_url = start_sandbox(stack, args.sandbox_port, key, args.log_dir, args.sandbox_companies)
                os.environ |= {"CONSENT_CODAT_BASE_URL": sandbox_url, "CONSENT_CODAT_API_KEY": key}
            database = migrate_consent_database()
            secret = webhook_secret()
            receiver_url = start_receiver(stack, args.webhook_port, secret, args.log_dir)
            if sandbox_url:
                send_sandbox_webhooks(sandbox_url, os.environ["CONSENT_CODAT_API_KEY"], receiver_url, secret)
            os.environ.setdefault("CONSENT_ALERT_WEBHOOK_URL", f"{receiver_url}/alerts")
            api_url = start_api(stack, args.api_port, args.api_workers, args.log_dir)
            env_file = write_serve_env(args.log_dir.parent / "serve.env", {
                "PREFECT_API_URL": os.environ.get("PREFECT_API_URL"),
                "CONSENT_DATABASE_URL": absolute_database_url(get_settings().database_url),
                "CONSENT_CODAT_BASE_URL": sandbox_url or get_settings().codat_base_url,
                "CONSENT_CODAT_API_KEY": os.environ["CONSENT_CODAT_API_KEY"] if sandbox_url else None,
                "CONSENT_API_URL": api_url,
            })
            serve(sandbox_url, database, receiver_url, api_url, env_file)
        except KeyboardInterrupt:
            pass
        print("stopping ...", flush=True)


def serve(sandbox_url: str | None, database: str, receiver_url: str, consent_api: str, env_file: Path) -> None:
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
    print(f"Consent API:  {consent_api} (docs at {consent_api}/docs; a key: consent api-keys create --product "
          "lending)", flush=True)
    print(f"Another terminal: source {env_file} (PREFECT_API_URL, CONSENT_DATABASE_URL, the Codat URL and key, "
          "CONSENT_API_URL)", flush=True)
    print(f"Serving {len(deployments)} deployments from {PREFECT_YAML}; Ctrl-C stops everything.", flush=True)
    prefect.serve(*deployments)


if __name__ == "__main__":
    main()
