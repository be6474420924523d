"""The errors the ledger raises for input it refuses: one base class, and two kinds an API maps to statuses."""

from __future__ import annotations


class ConsentError(ValueError):
    """A consent operation refused: bad input or a state that does not allow it. The message names the value."""


class NotFoundError(ConsentError):
    """What the operation names does not exist: an unknown company, product, connection or legal hold."""


class ConflictError(ConsentError):
    """The request is well formed but the consent's state refuses it: already granted, revoked or never
    granted, dated before the consent's last event, a company deleted at Codat, a hold already released."""
