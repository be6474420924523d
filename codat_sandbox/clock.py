"""The sandbox's own clock: real UTC time, or frozen at a set instant, and advanceable.

Every time the sandbox stores or serves is whole seconds in UTC with a `Z` (`stamp`), so stored times
compare correctly as text.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime; a naive value is taken to be UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_iso(text: str) -> datetime:
    """ISO 8601 (a trailing `Z` allowed) as aware UTC; ValueError naming the text otherwise, also for a
    time whose UTC lies outside years 1 to 9999 (`0001-01-01T00:00:00+05:00`)."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    try:
        return as_utc(parsed)
    except OverflowError:
        raise ValueError(f"not a time between years 1 and 9999 in UTC: {text!r}") from None


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`."""
    return as_utc(value).isoformat().replace("+00:00", "Z")


def stamp(value: datetime) -> str:
    """`value` as the sandbox's fixed-width text form, e.g. `2026-11-01T12:00:00Z`."""
    return iso(as_utc(value).replace(microsecond=0))


def unstamp(text: str) -> datetime:
    return parse_iso(text)


class SandboxClock:
    """Real time plus an offset, or frozen. Thread-safe."""

    def __init__(self, frozen_at: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen: datetime | None = as_utc(frozen_at) if frozen_at is not None else None
        self._offset = timedelta(0)

    def now(self) -> datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return utcnow() + self._offset

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def set(self, when: datetime | None) -> None:
        """Freeze at `when`; None returns to real time (and drops any offset)."""
        with self._lock:
            self._frozen = as_utc(when) if when is not None else None
            self._offset = timedelta(0)

    def advance(self, seconds: float) -> None:
        with self._lock:
            if self._frozen is not None:
                self._frozen = self._frozen + timedelta(seconds=seconds)
            else:
                self._offset += timedelta(seconds=seconds)

    def as_json(self) -> dict:
        return {"now": iso(self.now()), "frozen": self.frozen}
