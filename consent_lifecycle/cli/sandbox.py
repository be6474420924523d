"""`consent sandbox serve`: the Codat-compatible sandbox (package `codat_sandbox`) over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consent_lifecycle.cli.common import NowOption, command_group, fail, iso_time, settings, within

app = command_group("The Codat-compatible sandbox server.")


@app.command("serve")
def sandbox_serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(callback=within(0, 65535), help="Port to bind.")] = 8710,
    companies: Annotated[int, typer.Option(callback=within(0, 1_000_000), help="Companies to seed.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the generated world.")] = 7,
    api_key: Annotated[
        str | None,
        typer.Option(help="Key clients must send (default: $CONSENT_CODAT_API_KEY).", show_default=False),
    ] = None,
    state: Annotated[Path | None, typer.Option(help="SQLite file for the sandbox state (default: memory).")] = None,
    rate_limit_per_minute: Annotated[
        int, typer.Option(callback=within(1), help="Requests per minute per client.")
    ] = 1000,
    concurrent_per_company: Annotated[
        int, typer.Option(callback=within(1), help="Concurrent requests per company.")
    ] = 10,
    now: NowOption = None,
    eager_history: Annotated[
        bool,
        typer.Option(help="Make every company's pull history at start (as Codat has it), not on its first read."),
    ] = False,
    sync_scheduler: Annotated[
        bool,
        typer.Option(help="Run Codat's scheduled syncs (and send read.completed) when the sandbox clock advances."),
    ] = False,
) -> None:
    """Serve a Codat-compatible API over HTTP, seeded deterministically."""
    from codat_sandbox.config import SandboxConfig
    from codat_sandbox.runner import serve

    frozen = iso_time(now)
    key = api_key or _configured_key()
    if not key:
        raise fail("no API key: pass --api-key or set CONSENT_CODAT_API_KEY")
    config = SandboxConfig(
        api_key=key,
        companies=companies,
        seed=seed,
        state_path=str(state) if state else None,
        rate_limit_per_minute=rate_limit_per_minute,
        concurrent_per_company=concurrent_per_company,
        now=frozen,
        eager_history=eager_history,
        sync_scheduler=sync_scheduler,
    )
    typer.echo(f"Codat sandbox: http://{host}:{port} ({companies} companies, seed {seed})", err=True)
    serve(config, host=host, port=port)


def _configured_key() -> str | None:
    configured = settings().codat_api_key
    return configured.get_secret_value() if configured else None
