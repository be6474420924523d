"""The connection snapshot: what Codat says each company's connections are, and when that changed.

`observe` flattens what Codat returned into frames and decides what changed (pure); `store` writes it to
the database and reads it back.
"""

from consent_lifecycle.snapshot.observe import (
    Observation,
    merge_observation,
    observe,
    observe_dicts,
    vanished,
)

__all__ = ["Observation", "merge_observation", "observe", "observe_dicts", "vanished"]
