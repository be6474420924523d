"""The flows' artifacts in the Prefect UI: a table, or one line of markdown when there is nothing to show."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from consent_lifecycle.operator_view import describe


async def publish_table(
    key: str, rows: list[dict[str, Any]], *, description: str, nothing: str, total: int | None = None,
    full_list: str = "",
) -> None:
    """`rows` as the table artifact `key`, its description saying "N of M shown; the full list: ..." when
    `total` is more than the rows; none at all when empty: a one-line markdown artifact `nothing` instead
    (under the same key, so the key's latest version never shows an older run's table)."""
    if not rows:
        await create_markdown_artifact(key=key, markdown=nothing, description=description)
        return
    total = len(rows) if total is None else total
    await create_table_artifact(key=key, table=rows, description=describe(description, len(rows), total, full_list))
