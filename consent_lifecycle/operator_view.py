"""How the flows' tables and summaries read in the Prefect UI. Pure.

An operator reads a table without scrolling sideways: the columns that matter first (what, how urgent,
when), company names beside their ids, rows by urgency; a capped table says how much it shows and where
the full list is; an empty one is not a table at all (a row of nulls reads as one item). Summaries are
markdown tables, never a printed dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def lead_with(rows: Iterable[Mapping[str, Any]], first: list[str]) -> list[dict[str, Any]]:
    """Each row with the columns of `first` (those it has) leading, in that order, then the rest."""
    return [{**{k: row[k] for k in first if k in row}, **{k: v for k, v in row.items() if k not in first}}
            for row in rows]


def with_company_names(
    rows: Iterable[Mapping[str, Any]], names: Mapping[str, str], column: str = "company"
) -> list[dict[str, Any]]:
    """Each row with the company's name in `column` (empty when the snapshot has none), from its company_id."""
    return [{**row, column: names.get(row.get("company_id") or "", "")} for row in rows]


def cap_line(shown: int, total: int, full_list: str = "") -> str:
    """"N of M shown; the full list: `command`" when the table holds fewer rows than there are, else ""."""
    if shown >= total:
        return ""
    return f"{shown:,} of {total:,} shown" + (f"; the full list: `{full_list}`" if full_list else "")


def describe(description: str, shown: int, total: int, full_list: str = "") -> str:
    """A table's description, with its cap line when capped."""
    line = cap_line(shown, total, full_list)
    return f"{description}. {line}" if line else description


def markdown_table(header: tuple[str, str], values: Mapping[str, Any]) -> list[str]:
    """`values` as the lines of a two-column markdown table; a nested mapping is spelled out as `k v, ...`."""
    def cell(value: Any) -> str:
        if isinstance(value, Mapping):
            return ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        return "" if value is None else str(value)

    return [f"| {header[0]} | {header[1]} |", "|---|---|", *(f"| {k} | {cell(v)} |" for k, v in values.items())]
