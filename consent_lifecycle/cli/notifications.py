"""`consent notifications list`: the outbox of notices to customers (expiry warnings, expired connections)."""

from __future__ import annotations

from typing import Annotated

import typer

from consent_lifecycle.cli.common import (
    CompanyFilterOption,
    JsonOption,
    command_group,
    open_engine,
    print_json,
    print_table,
)

app = command_group("The notification outbox.")


def _notification_status(value: str | None) -> str | None:
    from consent_lifecycle.db.models import NOTIFICATION_STATUSES

    if value is not None and value not in NOTIFICATION_STATUSES:
        raise typer.BadParameter(f"unknown status {value!r}: expected one of {', '.join(NOTIFICATION_STATUSES)}")
    return value


@app.command("list")
def notifications_list(
    status: Annotated[
        str | None,
        typer.Option("--status", callback=_notification_status, metavar="S", help="pending, sending, sent or failed."),
    ] = None,
    company: CompanyFilterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Notifications in the outbox (expiry warnings, expired connections), newest last."""
    from consent_lifecycle.notify.outbox import list_notifications

    with open_engine() as engine:
        rows = list_notifications(engine, status=status, company_id=company)
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["id", "kind", "status", "company_id", "connection_id", "threshold_days", "expires_at", "link"])
