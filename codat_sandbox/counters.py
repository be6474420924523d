"""Counts of API requests by `METHOD /route/template`, and by status."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any


class RequestCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._counts: Counter[str] = Counter()
            self._by_status: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def record(self, key: str, status: int) -> None:
        with self._lock:
            self._counts[key] += 1
            self._by_status[key][str(status)] += 1

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self._counts.values()),
                "counts": dict(sorted(self._counts.items())),
                "by_status": {key: dict(sorted(c.items())) for key, c in sorted(self._by_status.items())},
            }
