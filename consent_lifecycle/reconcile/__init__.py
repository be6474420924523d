"""Consent reconciliation: what Codat is set to pull and did pull, and what products read, against consent.

`intervals` turns the ledger into entitlement intervals; `diff` holds each finding's set-wise check;
`check` runs them over one batch of companies (pure); `store` reads a batch's state and writes findings,
pulls seen, cursors and deletion items.
"""

from consent_lifecycle.reconcile.check import FINDING_COLUMNS, Observed, Reconciliation, reconcile

__all__ = ["FINDING_COLUMNS", "Observed", "Reconciliation", "reconcile"]
