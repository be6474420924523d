"""The consent database: models, engines, migrations."""

from consent_lifecycle.db.engine import lock_company, make_engine, make_session_factory, normalize_url
from consent_lifecycle.db.migrate import current, head, upgrade
from consent_lifecycle.db.types import NaiveDatetimeError, UTCDateTime

__all__ = [
    "NaiveDatetimeError", "UTCDateTime", "current", "head", "lock_company", "make_engine",
    "make_session_factory", "normalize_url", "upgrade",
]
