"""How a sandbox starts: the world it seeds, its clock and its limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from codat_sandbox.clock import as_utc


@dataclass(frozen=True)
class SandboxConfig:
    """Start-up settings of a Codat-compatible sandbox.

    `api_key` is the raw key clients send as `Authorization: Basic base64(api_key)`; it is kept out of the
    repr. `state_path` None keeps the world in memory; a path keeps it in a SQLite file, reused on the next
    start when it was seeded with the same `seed` and `companies`. `now`, when set, freezes the sandbox clock
    there at start. `eager_history` makes every company's pull history at start instead of on its first read.
    """

    api_key: str = field(repr=False)
    companies: int = 50
    seed: int = 7
    state_path: str | None = None
    rate_limit_per_minute: int = 1000
    concurrent_per_company: int = 10
    now: datetime | None = None
    pull_duration_seconds: int = 60
    #: make every company's pull history at start, not on its first read (a benchmark then measures reads)
    eager_history: bool = False
    #: run Codat's scheduled syncs (and their read.completed) when the clock is moved forward
    sync_scheduler: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key.strip():
            raise ValueError("SandboxConfig.api_key must be a non-empty string")
        for name, low in (
            ("companies", 0),
            ("seed", None),
            ("rate_limit_per_minute", 1),
            ("concurrent_per_company", 1),
            ("pull_duration_seconds", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
                bound = f" >= {low}" if low is not None else ""
                raise ValueError(f"SandboxConfig.{name} must be an integer{bound}, got {value!r}")
        for name in ("eager_history", "sync_scheduler"):
            value = getattr(self, name)
            if value is not True and value is not False:
                raise ValueError(f"SandboxConfig.{name} must be a bool, got {value!r}")
        if self.now is not None:
            if not isinstance(self.now, datetime):
                message = f"SandboxConfig.now must be a datetime or None, not {self.now!r}"
                raise ValueError(message)
            object.__setattr__(self, "now", as_utc(self.now))
