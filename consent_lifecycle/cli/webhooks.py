"""`consent webhooks serve`: the Codat webhook receiver (deployments/webhooks.py) over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consent_lifecycle.cli.common import command_group, fail, settings

app = command_group("Receive Codat webhooks into the inbox (the codat-events flow processes it).")
SECRET_ENV = "CONSENT_CODAT_WEBHOOK_SECRET"


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8720,
    alerts_file: Annotated[
        Path, typer.Option("--alerts-file", help="Where POST /alerts appends the operators' alerts.")
    ] = Path(".consent/alerts.jsonl"),
) -> None:
    """Store each verified Codat delivery in the inbox and answer at once; /alerts logs operator alerts."""
    if settings().codat_webhook_secret is None:
        raise fail(f"{SECRET_ENV} is not set: the receiver cannot check signatures (the endpoint's whsec_... secret)")
    from deployments.webhooks import serve as serve_receiver

    serve_receiver(host, port, alerts_file)
