"""Time helpers. There is no hidden clock: decisions take `now`; only entry points call `utcnow()`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise


def utcnow() -> datetime:
    """The current time, timezone-aware UTC. Call it at the edge (CLI, flow parameters), never in a decision."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime; a naive value is taken to be UTC already (as SQLite returns it)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_iso(text: str) -> datetime:
    """Parse ISO 8601 (a trailing `Z` allowed) into aware UTC; ValueError naming the text otherwise."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    return as_utc(parsed)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, seconds precision kept to the microsecond only when present."""
    if value is None:
        return None
    return as_utc(value).isoformat().replace("+00:00", "Z")


def day_slices(start: datetime, end: datetime, days: int = 1) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at UTC midnights `days` apart: a backfill's slices (the first and last may be partial)."""
    if start >= end:
        raise ValueError(f"start {iso(start)} is not before end {iso(end)}")
    start, end = as_utc(start), as_utc(end)
    cuts = [start]
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=days)
    while midnight < end:
        cuts.append(midnight)
        midnight += timedelta(days=days)
    cuts.append(end)
    return list(pairwise(cuts))
