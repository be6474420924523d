"""Codat data type keys and the source type each belongs to.

The keys are the 43-value enum `DataStatus.dataType` of Codat's Platform spec; the grouping by prefix
(`banking-`, `commerce-`, the rest accounting) follows the reference (§4).
"""

from __future__ import annotations

from typing import Final

SOURCE_TYPES: Final[tuple[str, ...]] = (
    "Accounting", "Banking", "BankFeed", "Commerce", "Expense", "Other", "Unknown",
)
CONNECTION_STATUSES: Final[tuple[str, ...]] = ("PendingAuth", "Linked", "Unlinked", "Deauthorized")

ACCOUNTING: Final[tuple[str, ...]] = (
    "accountTransactions", "balanceSheet", "bankAccounts", "bankTransactions", "billCreditNotes",
    "billPayments", "bills", "cashFlowStatement", "chartOfAccounts", "company", "creditNotes",
    "customers", "directCosts", "directIncomes", "invoices", "itemReceipts", "items", "journalEntries",
    "journals", "paymentMethods", "payments", "profitAndLoss", "purchaseOrders", "salesOrders",
    "suppliers", "taxRates", "trackingCategories", "transfers",
)
BANKING: Final[tuple[str, ...]] = (
    "banking-accountBalances", "banking-accounts", "banking-transactionCategories", "banking-transactions",
)
COMMERCE: Final[tuple[str, ...]] = (
    "commerce-companyInfo", "commerce-customers", "commerce-disputes", "commerce-locations",
    "commerce-orders", "commerce-paymentMethods", "commerce-payments", "commerce-productCategories",
    "commerce-products", "commerce-taxComponents", "commerce-transactions",
)

#: data type key -> the source type of the connections that carry it
DATA_TYPE_SOURCE: Final[dict[str, str]] = {
    **{key: "Accounting" for key in ACCOUNTING},
    **{key: "Banking" for key in BANKING},
    **{key: "Commerce" for key in COMMERCE},
}
DATA_TYPES: Final[tuple[str, ...]] = ACCOUNTING + BANKING + COMMERCE

#: the dataset status enum shared by PullOperation.status and DataStatus.currentStatus
DATASET_STATUSES: Final[tuple[str, ...]] = (
    "Initial", "Queued", "Fetching", "MapQueued", "Mapping", "Complete", "FetchError", "MapError",
    "InternalError", "ProcessingQueued", "Processing", "ProcessingError", "ValidationQueued", "Validating",
    "ValidationError", "AuthError", "Cancelled", "NotSupported", "RateLimitError", "PermissionsError",
    "PrerequisiteNotMet",
)
#: the status of a pull that fetched its data
COMPLETE: Final = "Complete"
#: statuses after which a pull operation is over
DATASET_FINAL_STATUSES: Final[frozenset[str]] = frozenset(
    {"Complete", "FetchError", "MapError", "InternalError", "ProcessingError", "ValidationError",
     "AuthError", "Cancelled", "NotSupported", "RateLimitError", "PermissionsError", "PrerequisiteNotMet"}
)


def source_type_of(data_type: str) -> str:
    """The source type that carries `data_type`; KeyError naming the key if it is not a Codat data type."""
    try:
        return DATA_TYPE_SOURCE[data_type]
    except KeyError:
        raise KeyError(f"unknown Codat data type {data_type!r}") from None
