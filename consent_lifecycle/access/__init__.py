"""Product reads of customer data: products ask before they read, and report what they read.

- `check_one` (single): may product P read data type T on connection N of company C now? One statement,
  plain Python: the call a product makes before each read, through the API.
- `check_access` (check): the same for many pairs at once, set-wise; `facts` reads what both decide on.
- `reasons`: the stable codes (and sentences) of every answer.
- `record_access` / `record_accesses` (records): reads reported; reconciliation checks each against the
  reading product's own consent at the time. `is_permitted` is the ledger replay both checks agree with.
"""

from consent_lifecycle.access.check import check_access
from consent_lifecycle.access.reasons import CODES, REASONS, explain
from consent_lifecycle.access.records import is_permitted, record_access, record_accesses
from consent_lifecycle.access.single import Decision, check_one

__all__ = [
    "CODES", "REASONS", "Decision", "check_access", "check_one", "explain", "is_permitted", "record_access",
    "record_accesses",
]
