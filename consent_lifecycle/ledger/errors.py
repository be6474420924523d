"""The one error the ledger raises for input it refuses."""

from __future__ import annotations


class ConsentError(ValueError):
    """A consent operation refused: bad input or a state that does not allow it. The message names the value."""
