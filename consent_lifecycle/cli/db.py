"""`consent db upgrade`: create or migrate the consent database."""

from __future__ import annotations

from typing import Annotated

import typer

from consent_lifecycle.cli.common import command_group, safe_url, settings

app = command_group("The consent database.")


@app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Create or migrate the database at $CONSENT_DATABASE_URL."""
    from consent_lifecycle.db.migrate import current, upgrade

    url = settings().database_url
    upgrade(url, revision)  # always, and to the revision asked for: this is the command that migrates
    typer.echo(f"database at {safe_url(url)} is at revision {current(url)}")
