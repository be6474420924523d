"""Column types shared by the models and the migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: JSON everywhere, JSONB on PostgreSQL (comparable, indexable)
JSONType = JSON().with_variant(JSONB(), "postgresql")
#: 64-bit surrogate keys on PostgreSQL; INTEGER on SQLite so that the column is the rowid (autoincrement)
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class NaiveDatetimeError(ValueError):
    """A naive datetime was given to a UTCDateTime column."""


class UTCDateTime(TypeDecorator[datetime]):
    """An instant in time: stored in UTC, always returned as an aware UTC datetime.

    PostgreSQL: `timestamp with time zone`. SQLite: text holding the naive UTC time (SQLite has no time
    zones), so ordering and comparison in SQL stay correct. Naive input is refused, never guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(
                f"UTCDateTime needs a datetime, got {type(value).__name__} {value!r}"
            )
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveDatetimeError(
                f"UTCDateTime refuses the naive datetime {value.isoformat()}: pass an aware datetime "
                "(e.g. datetime.now(UTC) or consent_lifecycle.clock.utcnow())"
            )
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # a value written by raw SQL on SQLite
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
