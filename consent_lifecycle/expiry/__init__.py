"""Connection expiry: when each connection's consent expires and what that makes it now (`classify`), and
what a scan of Codat's connections came to (`scan`: a batch's counts and notices, the run's summary)."""

from consent_lifecycle.expiry.classify import (
    ATTENTION_CLASSES,
    CLASSES,
    INPUT_COLUMNS,
    NOTIFICATION_COLUMNS,
    REPORT_COLUMNS,
    attention_table,
    class_counts,
    classify,
    plan_notifications,
    policies_for,
    top_attention,
)

__all__ = [
    "ATTENTION_CLASSES", "CLASSES", "INPUT_COLUMNS", "NOTIFICATION_COLUMNS", "REPORT_COLUMNS", "attention_table",
    "class_counts", "classify", "plan_notifications", "policies_for", "top_attention",
]
