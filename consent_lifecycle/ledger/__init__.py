"""The consent ledger: grant, extend, reconfirm, revoke, disconnect; entitlements; impact; legal holds."""

__all__ = ["CHANNELS", "ConflictError", "ConsentError", "ConsentView", "Impact", "Ledger", "NotFoundError", "load_events"]

from consent_lifecycle.ledger.errors import ConflictError, ConsentError, NotFoundError
from consent_lifecycle.ledger.events import load_events
from consent_lifecycle.ledger.impact import Impact
from consent_lifecycle.ledger.ledger import Ledger
from consent_lifecycle.ledger.scope import CHANNELS
from consent_lifecycle.ledger.views import ConsentView
