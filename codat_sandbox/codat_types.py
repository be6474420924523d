"""Codat's enums as its Platform spec defines them: data type keys (with the source type that carries
each), connection statuses, dataset statuses.

The sandbox stands in for Codat, so it keeps its own copy rather than importing the consent system's
(`consent_lifecycle.datatypes`, our model of the same API): a test checks the two agree.
"""

from __future__ import annotations

from typing import Final

SOURCE_TYPES: Final[tuple[str, ...]] = (
    "Accounting", "Banking", "BankFeed", "Commerce", "Expense", "Other", "Unknown",
)
CONNECTION_STATUSES: Final[tuple[str, ...]] = ("PendingAuth", "Linked", "Unlinked", "Deauthorized")

_ACCOUNTING = (
    "accountTransactions", "balanceSheet", "bankAccounts", "bankTransactions", "billCreditNotes",
    "billPayments", "bills", "cashFlowStatement", "chartOfAccounts", "company", "creditNotes",
    "customers", "directCosts", "directIncomes", "invoices", "itemReceipts", "items", "journalEntries",
    "journals", "paymentMethods", "payments", "profitAndLoss", "purchaseOrders", "salesOrders",
    "suppliers", "taxRates", "trackingCategories", "transfers",
)
_BANKING = ("banking-accountBalances", "banking-accounts", "banking-transactionCategories", "banking-transactions")
_COMMERCE = (
    "commerce-companyInfo", "commerce-customers", "commerce-disputes", "commerce-locations",
    "commerce-orders", "commerce-paymentMethods", "commerce-payments", "commerce-productCategories",
    "commerce-products", "commerce-taxComponents", "commerce-transactions",
)
#: data type key -> the source type of the connections that carry it (`banking-`, `commerce-`, the rest)
DATA_TYPE_SOURCE: Final[dict[str, str]] = {
    **dict.fromkeys(_ACCOUNTING, "Accounting"),
    **dict.fromkeys(_BANKING, "Banking"),
    **dict.fromkeys(_COMMERCE, "Commerce"),
}
DATA_TYPES: Final[tuple[str, ...]] = _ACCOUNTING + _BANKING + _COMMERCE

#: PullOperation.status / DataStatus.currentStatus
DATASET_STATUSES: Final[tuple[str, ...]] = (
    "Initial", "Queued", "Fetching", "MapQueued", "Mapping", "Complete", "FetchError", "MapError",
    "InternalError", "ProcessingQueued", "Processing", "ProcessingError", "ValidationQueued", "Validating",
    "ValidationError", "AuthError", "Cancelled", "NotSupported", "RateLimitError", "PermissionsError",
    "PrerequisiteNotMet",
)
