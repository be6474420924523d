"""The consent ledger: grant, extend, reconfirm, revoke, disconnect; entitlements; impact; legal holds."""

from consent_lifecycle.ledger.errors import ConsentError
from consent_lifecycle.ledger.impact import Impact
from consent_lifecycle.ledger.ledger import Ledger
from consent_lifecycle.ledger.scope import CHANNELS
from consent_lifecycle.ledger.views import ConsentView

__all__ = ["CHANNELS", "ConsentError", "ConsentView", "Impact", "Ledger"]
