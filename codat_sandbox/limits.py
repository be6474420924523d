"""Codat-like rate limits: a per-minute fixed window per client (on monotonic time) and a bound on
concurrent requests per company."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_in: float  # seconds until the window ends

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_in))


class RateLimiter:
    """At most `per_minute` requests per client in each fixed 60-second window (real time)."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._monotonic = monotonic
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def _window(self, client: str, now: float) -> tuple[float, int]:
        start, count = self._windows.get(client, (now, 0))
        if now - start >= self.WINDOW:
            start, count = now, 0
        return start, count

    def hit(self, client: str) -> Decision:
        """Count one request from `client`; `allowed` False when it is over the limit (not counted then)."""
        with self._lock:
            now = self._monotonic()
            start, count = self._window(client, now)
            reset_in = start + self.WINDOW - now
            if count >= self.per_minute:
                self._windows[client] = (start, count)
                return Decision(False, self.per_minute, 0, reset_in)
            count += 1
            self._windows[client] = (start, count)
            return Decision(True, self.per_minute, self.per_minute - count, reset_in)

    def peek(self, client: str) -> Decision:
        with self._lock:
            now = self._monotonic()
            start, count = self._window(client, now)
            return Decision(
                count < self.per_minute,
                self.per_minute,
                max(0, self.per_minute - count),
                start + self.WINDOW - now,
            )

    def configure(self, per_minute: int) -> None:
        with self._lock:
            self.per_minute = per_minute
            self._windows.clear()

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


class ConcurrencyLimiter:
    """At most `per_company` requests in flight for one company at a time."""

    def __init__(self, per_company: int) -> None:
        self.per_company = per_company
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, company: str) -> bool:
        with self._lock:
            current = self._in_flight.get(company, 0)
            if current >= self.per_company:
                return False
            self._in_flight[company] = current + 1
            return True

    def release(self, company: str) -> None:
        with self._lock:
            current = self._in_flight.get(company, 0) - 1
            if current > 0:
                self._in_flight[company] = current
            else:
                self._in_flight.pop(company, None)

    def in_flight(self, company: str) -> int:
        with self._lock:
            return self._in_flight.get(company, 0)
