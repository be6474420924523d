"""What the operator reads in the Prefect UI, as plain data (issue 18): tables that lead with what, how urgent
and when, company names beside ids, urgency order, a line saying what a capped table leaves out, the reason a
run over its deletion cap stopped, and summaries as markdown tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.expiry import attention_table, classify
from consent_lifecycle.operator_view import cap_line, describe, lead_with, markdown_table, with_company_names
from consent_lifecycle.reconcile.summary import findings_table
from consent_lifecycle.retention.explain import over_cap_message, source_of

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
CATALOG = load_catalog()


def ago(days: float | None) -> datetime | None:
    return None if days is None else NOW - timedelta(days=days)


def connection(id: str, status: str = "Linked", source_type: str = "Banking", *, authorized: float = 10,
               synced: float = 1, changed: float | None = None) -> dict:
    return {
        "id": id, "company_id": f"company-{id}", "company": f"Company {id}", "platform_name": "Bank",
        "source_type": source_type, "status": status, "jurisdiction": "uk", "created_at": ago(300),
        "last_sync_at": ago(synced), "last_authorized_at": ago(authorized), "last_reconfirmed_at": None,
        "status_changed_at": ago(changed),
    }


def classified(*rows: dict) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    for column in ("created_at", "last_sync_at", "last_authorized_at", "last_reconfirmed_at", "status_changed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return classify(frame, CATALOG, NOW)


def test_the_attention_table_leads_with_class_expiry_and_company_and_puts_the_most_urgent_first():
    table = attention_table(classified(
        connection("stale", source_type="Accounting", synced=200),
        connection("later", authorized=84),  # 6 days left
        connection("sooner", authorized=89),  # 1 day left
        connection("gone", authorized=95),
        connection("fine", authorized=10),
    ), limit=10)

    assert list(table.columns[:4]) == ["expiry_class", "expires_at", "threshold_days", "company"]
    assert list(table.columns[-2:]) == ["company_id", "connection_id"]
    assert list(table["connection_id"]) == ["gone", "sooner", "later", "stale"]
    assert table.loc[0, "company"] == "Company gone"


def test_a_deauthorized_connection_shows_when_it_expired_never_a_future_expiry():
    table = attention_table(classified(
        connection("deauth", status="Deauthorized", authorized=10, changed=2),  # policy expiry 80 days ahead
        connection("unknown", status="Deauthorized", authorized=10),  # deauthorized, moment not recorded
    ), limit=10).set_index("connection_id")

    assert (table["expiry_class"] == "expired").all()
    assert table.loc["deauth", "expires_at"] == pd.Timestamp(ago(2))
    assert pd.isna(table.loc["unknown", "expires_at"])


def test_findings_go_most_serious_kind_first_then_most_findings_with_company_names():
    parts = [
        pd.DataFrame({"kind": ["missing_pull", "unconsented_pull"], "company_id": ["a", "a"], "findings": [9, 1]}),
        pd.DataFrame({"kind": ["missing_pull", "unconsented_pull"], "company_id": ["b", "b"], "findings": [2, 5]}),
        pd.DataFrame(columns=["kind", "company_id", "findings"]),
    ]

    rows, total = findings_table(parts, {"a": "Acme Ltd"}, limit=3)

    assert total == 4
    assert [list(r) for r in rows] == [["kind", "findings", "company", "company_id"]] * 3
    assert [(r["kind"], r["company_id"], r["findings"]) for r in rows] == [
        ("unconsented_pull", "b", 5), ("unconsented_pull", "a", 1), ("missing_pull", "a", 9),
    ]
    assert rows[1]["company"] == "Acme Ltd" and rows[0]["company"] == ""
    assert findings_table([], {}, 3) == ([], 0)


def test_columns_lead_names_sit_beside_ids_and_a_capped_table_says_where_the_rest_is():
    rows = lead_with(with_company_names([{"key": "k" * 80, "id": 1, "company_id": "a", "due_at": "t"}],
                                        {"a": "Acme"}), ["due_at", "company"])
    assert list(rows[0]) == ["due_at", "company", "key", "id", "company_id"] and rows[0]["company"] == "Acme"
    assert cap_line(1000, 1170, "consent deletions list --status planned") == (
        "1,000 of 1,170 shown; the full list: `consent deletions list --status planned`"
    )
    assert cap_line(3, 3, "x") == "" and describe("Planned", 3, 3, "x") == "Planned"
    assert describe("Planned", 2, 3) == "Planned. 2 of 3 shown"


def test_a_summary_is_a_markdown_table_even_for_a_nested_count():
    lines = markdown_table(("notices", "count"), {"planned": 3, "delivery": {"claimed": 21, "sent": 20}})
    assert lines == ["| notices | count |", "|---|---|", "| planned | 3 |", "| delivery | claimed 21, sent 20 |"]
    assert not any("{" in line for line in lines)


def test_a_run_over_its_deletion_cap_says_which_products_and_companies_and_what_to_do_next():
    counts = pd.DataFrame([
        ("c1", "consent ended 2026-11-01T00:00:00.000000Z (lending)", "balanceSheet", 700),
        ("c2", "consent ended 2026-11-02T00:00:00.000000Z (lending)", "profitAndLoss", 300),
        ("c2", "consent ended 2026-11-02T00:00:00.000000Z (dashboard,lending)", None, 150),
        ("c3", "unconsented_pull", "journalEntries", 12),
    ], columns=["company_id", "reason", "data_type", "items"])

    message = over_cap_message(1162, 1000, counts, {"c1": "Acme Ltd", "c2": "Bolt plc"})

    assert message.startswith("1162 deletions due exceed max_deletions=1000: nothing deleted.")
    assert ("Why they are due: consent for lending ended 1000, consent for dashboard+lending ended 150, "
            "data pulled without consent 12.") in message
    assert ("Top data types: balanceSheet 700, profitAndLoss 300, whole connections at Codat 150, journalEntries 12."
            in message)
    assert "Top companies: Acme Ltd (c1) 700, Bolt plc (c2) 450, c3 12." in message
    assert "`consent deletions list --status planned`" in message
    assert "`consent run retention --execute --max-deletions 1162`" in message
    assert source_of("consent ended 2026-11-01T00:00:00Z (a,b)") == "consent for a+b ended"
