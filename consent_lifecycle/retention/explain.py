"""Where the due deletion items come from, in words an operator acts on. Pure.

When more items are due than a run may delete (`max_deletions`), the run stops before deleting anything;
its failure message then says which products' ended consents and which companies the due items come from,
and what to do next (review the plan, then rerun with a higher cap).
"""

from __future__ import annotations

import re

import pandas as pd

from consent_lifecycle.retention.plan import PLANNER_REASON_PREFIX

#: companies named in the message, most items first
TOP_COMPANIES = 5
#: the source of items opened by the reconciliation (data pulled without consent), not by a consent ending
UNCONSENTED = "data pulled without consent"
_PRODUCTS = re.compile(r"\(([^()]*)\)\s*$")


def source_of(reason: str) -> str:
    """Why an item of `reason` is due: "consent for a+b ended" ("consent ended <when> (a,b)"), or what else
    opened it (the reconciliation: data pulled without consent)."""
    if reason.startswith(PLANNER_REASON_PREFIX):
        found = _PRODUCTS.search(reason)
        products = "+".join(found.group(1).split(",")) if found and found.group(1) else ""
        return f"consent for {products} ended" if products else "consent ended"
    return UNCONSENTED if reason == "unconsented_pull" else reason


def due_sources(counts: pd.DataFrame, names: dict[str, str] | None = None) -> tuple[dict[str, int], pd.DataFrame]:
    """`counts` (company_id, reason, data_type, items) as items by source (most first) and by company
    (company_id, name, items; most first, ties by id)."""
    names = names or {}
    by_source = (
        counts.assign(source=counts["reason"].map(source_of)).groupby("source")["items"].sum()
        .sort_values(ascending=False, kind="stable")
    )
    by_company = (
        counts.groupby("company_id", as_index=False)["items"].sum()
        .sort_values(["items", "company_id"], ascending=[False, True], kind="stable")
        .reset_index(drop=True)
    )
    by_company.insert(1, "name", by_company["company_id"].map(names).fillna(""))
    return {str(k): int(v) for k, v in by_source.items()}, by_company


def over_cap_message(due: int, max_deletions: int, counts: pd.DataFrame, names: dict[str, str] | None = None) -> str:
    """The failure message of a run stopped by the cap: how many, from which products and companies, and
    the operator's next step."""
    by_source, by_company = due_sources(counts, names)
    sources = ", ".join(f"{source} {items}" for source, items in by_source.items()) or "none"
    kinds = counts.assign(data_type=counts["data_type"].fillna("whole connections at Codat"))
    by_type = kinds.groupby("data_type")["items"].sum().sort_values(ascending=False, kind="stable")
    types = ", ".join(f"{kind} {int(items)}" for kind, items in by_type.head(TOP_COMPANIES).items())
    top = by_company.head(TOP_COMPANIES)
    companies = ", ".join(
        (f"{row.name} ({row.company_id})" if row.name else row.company_id) + f" {row.items}"
        for row in top.itertuples(index=False)
    )
    more = len(by_company) - len(top)
    return (
        f"{due} deletions due exceed max_deletions={max_deletions}: nothing deleted. "
        f"Why they are due: {sources}. Top data types: {types or 'none'}. "
        f"Top companies: {companies or 'none'}" + (f" (and {more} more)" if more > 0 else "") + ". "
        "Next: review them (`consent deletions list --status planned`), then run "
        f"`consent run retention --execute --max-deletions {due}` (or the deployment with "
        f"`--param max_deletions={due}`)."
    )
