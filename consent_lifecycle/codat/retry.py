"""When and how long to wait before retrying a Codat call.

Codat's own policy (the spec's `x-speakeasy-retries`, applied by its SDK): exponential backoff from 500 ms,
exponent 1.5, at most 60 s per wait and one hour in all, on 408, 429, 5XX and connection errors, honouring
`Retry-After` given as seconds or as an HTTP date.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx

from consent_lifecycle.clock import as_utc
from consent_lifecycle.codat.errors import CodatError

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: answers after which Codat may or may not have acted on a request
UNKNOWN_OUTCOME_STATUSES = frozenset({408, 500, 502, 503, 504})
#: statuses that prove the request was not acted upon, so even a non-idempotent call may be resent
NOT_PROCESSED_STATUSES = frozenset({429})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_delay: float = 0.5
    exponent: float = 1.5
    max_delay: float = 60.0
    max_elapsed: float = 3600.0
    jitter: float = 0.2
    statuses: frozenset[int] = field(default=RETRYABLE_STATUSES)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Wait before retry number `attempt` (1 = first retry), with +/- `jitter` spread."""
        base = min(self.max_delay, self.initial_delay * self.exponent ** (attempt - 1))
        return max(0.0, base * (1 + rng.uniform(-self.jitter, self.jitter)))

    def wait(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Honour `Retry-After` when given (never waiting less), else back off."""
        if retry_after is not None:
            return min(self.max_delay, retry_after + rng.uniform(0, min(0.25, retry_after * 0.1)))
        return self.backoff(attempt, rng)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, (as_utc(when) - as_utc(now)).total_seconds())


def outcome_unknown(exc: CodatError) -> bool:
    """Whether Codat may or may not have acted on the failed request: a 5xx or 408 answer, or no answer after
    the request was sent (a connection error means it never was)."""
    if exc.status_code is not None:
        return exc.status_code in UNKNOWN_OUTCOME_STATUSES
    cause = exc.__cause__
    return isinstance(cause, httpx.TransportError) and not isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout)
