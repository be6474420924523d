"""Webhook delivery off the request path: a pool of worker threads, at least once, on Codat's retry
schedule.

Why threads with their own keep-alive connections: a route that causes an event must answer at once, and
a sandbox advanced a day at 100k companies sends hundreds of thousands of `read.completed`; one worker
with one connection per receiver, and the raw HTTP/1.1 client of `rawhttp`, deliver thousands a second.

Each delivery keeps its `webhook-id` on every attempt (a receiver dedupes on it); `webhook-timestamp` is
the real time of the attempt. A 2xx is delivered; any other status, a connection error or a timeout
(15 s) is tried again after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, each times `retry_scale` (real
time; a test sets it tiny), then given up. Pending deliveries live in memory: a restarted sandbox has
none (Codat's would survive; nothing here tests that).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from codat_sandbox.rawhttp import HttpError, KeepAliveClient
from codat_sandbox.webhooks import sign_with_key

log = logging.getLogger(__name__)

#: seconds before each attempt after a failed one: "immediately, then 5 s, 5 m, 30 m, 2 h, 5 h, 10 h, 10 h"
RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
ATTEMPT_TIMEOUT_SECONDS = 15.0
#: a held-back (reordered) delivery goes out once a later one has been tried, or after this long
REORDER_HOLD_SECONDS = 1.0
RECENT_ATTEMPTS = 20_000
DEFAULT_WORKERS = 8


@dataclass
class Delivery:
    """One event for one consumer. `attempt` counts the attempts made so far."""

    webhook_id: str
    event_type: str
    consumer_id: str
    url: str
    key: bytes = field(repr=False)
    body: bytes = field(repr=False)
    attempt: int = 0
    duplicate: bool = False
    seq: int = 0
    generation: int = 0


class Attempts:
    """The recent attempts and their outcomes (bounded), and totals since the last reset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_ATTEMPTS)
        self.totals: dict[str, int] = {}

    def add(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            self.recent.extend(entries)
            for entry in entries:
                self.totals[entry["outcome"]] = self.totals.get(entry["outcome"], 0) + 1

    def as_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.recent)

    def clear(self) -> None:
        with self._lock:
            self.recent.clear()
            self.totals = {}


def _entry(delivery: Delivery, status: int | None, outcome: str, error: str | None = None) -> dict[str, Any]:
    entry = {
        "id": delivery.webhook_id,
        "event_type": delivery.event_type,
        "consumer_id": delivery.consumer_id,
        "attempt": delivery.attempt,
        "status": status,
        "outcome": outcome,
        "at": time.time(),
    }
    if delivery.duplicate:
        entry["duplicate"] = True
    if error:
        entry["error"] = error
    return entry


class Poster:
    """One worker's HTTP clients, one keep-alive connection per receiver origin."""

    def __init__(self) -> None:
        self._raw: dict[str, KeepAliveClient] = {}
        self._httpx: httpx.Client | None = None

    def post(self, url: str, headers: dict[str, str], body: bytes) -> int:
        parts = urlsplit(url)
        if parts.scheme == "http":
            origin = parts.netloc
            client = self._raw.get(origin)
            if client is None:
                client = self._raw[origin] = KeepAliveClient(url, ATTEMPT_TIMEOUT_SECONDS)
            return client.post(url, headers, body)
        if self._httpx is None:
            self._httpx = httpx.Client(timeout=ATTEMPT_TIMEOUT_SECONDS)
        return self._httpx.post(url, content=body, headers=headers).status_code

    def close(self) -> None:
        for client in self._raw.values():
            client.close()
        if self._httpx is not None:
            self._httpx.close()


class DeliveryEngine:
    """Queues of deliveries (ready, timed, held back) and the workers that send them."""

    def __init__(self, workers: int = DEFAULT_WORKERS) -> None:
        self.attempts = Attempts()
        self.retry_scale = 1.0
        self._cond = threading.Condition()
        self._ready: deque[Delivery] = deque()
        self._timed: list[tuple[float, int, Delivery]] = []
        self._held: list[tuple[float, Delivery]] = []
        self._in_flight = 0
        self._seq = itertools.count(1)
        self._generation = 0
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"webhook-delivery-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- submitting ------------------------------------------------------------------------------------------

    def submit(self, deliveries: list[Delivery], *, delay: float = 0.0, hold: bool = False) -> None:
        """Queue `deliveries` now, after `delay` real seconds, or held back behind later ones (`hold`)."""
        with self._cond:
            for delivery in deliveries:
                delivery.seq = next(self._seq)
                delivery.generation = self._generation
                if hold:
                    self._held.append((time.monotonic() + REORDER_HOLD_SECONDS, delivery))
                elif delay > 0:
                    heapq.heappush(self._timed, (time.monotonic() + delay, delivery.seq, delivery))
                else:
                    self._ready.append(delivery)
            self._cond.notify(len(deliveries))

    def record(self, entries: list[dict[str, Any]]) -> None:
        """Outcomes decided without an attempt (a dropped delivery)."""
        self.attempts.add(entries)

    # -- state -----------------------------------------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        with self._cond:
            return {
                "ready": len(self._ready),
                "scheduled": len(self._timed),
                "held": len(self._held),
                "in_flight": self._in_flight,
            }

    def drain(self, timeout: float) -> bool:
        """Block until nothing is queued, scheduled, held or in flight; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._ready or self._timed or self._held or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def cancel_all(self) -> None:
        """Forget every pending delivery (a sandbox reset); attempts in flight finish unrecorded."""
        with self._cond:
            self._generation += 1
            self._ready.clear()
            self._timed.clear()
            self._held.clear()
            self._cond.notify_all()
        self.attempts.clear()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the workers, waiting at most `timeout` in all (a worker stuck on a slow receiver is a daemon
        thread: it dies with the process)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- working ---------------------------------------------------------------------------------------------

    def _promote(self, now: float) -> float | None:
        """Move due timed and expired held deliveries to ready; the seconds until the next one is due."""
        while self._timed and self._timed[0][0] <= now:
            self._ready.append(heapq.heappop(self._timed)[2])
        if self._held:
            expired = [d for until, d in self._held if until <= now]
            if expired:
                self._held = [(until, d) for until, d in self._held if until > now]
                self._ready.extend(expired)
        waits = [self._timed[0][0] - now] if self._timed else []
        waits += [until - now for until, _ in self._held[:1]]
        return min(waits) if waits else None

    def _release_held_before(self, seq: int) -> None:
        """A later delivery has been tried: what was held back behind it goes now (reordered)."""
        if self._held:
            released = [d for _, d in self._held if d.seq < seq]
            if released:
                self._held = [(until, d) for until, d in self._held if d.seq >= seq]
                self._ready.extend(released)
                self._cond.notify(len(released))

    def _take(self) -> Delivery | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                wait = self._promote(time.monotonic())
                if self._ready:
                    self._in_flight += 1
                    return self._ready.popleft()
                self._cond.wait(wait if wait is not None else 1.0)

    def _work(self) -> None:
        poster = Poster()
        try:
            while (delivery := self._take()) is not None:
                entry = self._attempt(poster, delivery)
                with self._cond:  # recorded before it stops counting as in flight: drain then sees it
                    if delivery.generation == self._generation:
                        self.attempts.add([entry])
                        self._after(delivery, entry)
                    self._in_flight -= 1
        finally:
            poster.close()

    def _attempt(self, poster: Poster, delivery: Delivery) -> dict[str, Any]:
        delivery.attempt += 1
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_with_key(delivery.key, delivery.webhook_id, stamp, delivery.body),
        }
        try:
            status: int | None = poster.post(delivery.url, headers, delivery.body)
            error = None
        except (OSError, HttpError, httpx.HTTPError) as exc:
            status, error = None, type(exc).__name__
        except Exception as exc:  # a receiver must not kill a worker
            log.warning("webhook delivery to %s failed unexpectedly", delivery.url, exc_info=exc)
            status, error = None, type(exc).__name__
        if status is not None and 200 <= status < 300:
            return _entry(delivery, status, "delivered")
        outcome = "retrying" if delivery.attempt < len(RETRY_SCHEDULE) else "failed"
        return _entry(delivery, status, outcome, error)

    def _after(self, delivery: Delivery, entry: dict[str, Any]) -> None:
        """Under the lock: schedule a retry if the attempt failed, release what was held behind it."""
        if entry["outcome"] == "retrying":
            due = time.monotonic() + RETRY_SCHEDULE[delivery.attempt] * self.retry_scale
            heapq.heappush(self._timed, (due, delivery.seq, delivery))
            self._cond.notify()  # a waiting worker recomputes how long to sleep
        self._release_held_before(delivery.seq)
