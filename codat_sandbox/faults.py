"""Injected faults: 429s, 5xx, timeouts and latency, drawn from a seeded rng so a run can be replayed."""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class FaultSettings:
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    latency_ms: int = 0
    retry_after_seconds: int = 1
    timeout_seconds: float = 10.0
    seed: int = 0

    @classmethod
    def from_json(cls, body: Any) -> FaultSettings:
        """Settings from an admin body (missing fields take their defaults); ValueError naming the field."""
        if not isinstance(body, dict):
            # callers answer a ValueError with a 400 naming the field before the colon
            raise ValueError("body: must be a JSON object")  # noqa: TRY004
        unknown = sorted(set(body) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"{unknown[0]}: unknown fault setting (known: {', '.join(cls.__dataclass_fields__)})"
            )
        values: dict[str, Any] = {}
        for name in ("rate_429", "rate_5xx", "rate_timeout"):
            value = body.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: must be a number between 0 and 1")
            values[name] = float(value)
        if values["rate_429"] + values["rate_5xx"] + values["rate_timeout"] > 1.0 + 1e-9:
            raise ValueError("rate_429: rate_429 + rate_5xx + rate_timeout must not exceed 1")
        for name, default, low in (("latency_ms", 0, 0), ("retry_after_seconds", 1, 1), ("seed", 0, None)):
            value = body.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
                raise ValueError(f"{name}: must be an integer" + (f" >= {low}" if low is not None else ""))
            values[name] = value
        timeout = body.get("timeout_seconds", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ValueError("timeout_seconds: must be a number >= 0")
        values["timeout_seconds"] = float(timeout)
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


Fault = Literal["429", "5xx", "timeout"]


class FaultInjector:
    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(settings or FaultSettings())

    def configure(self, settings: FaultSettings) -> None:
        with self._lock:
            self.settings = settings
            self._rng = random.Random(settings.seed)

    def draw(self) -> tuple[Fault | None, int]:
        """The fault for the next API request (or None) and, for a 5xx, which status (500 or 503)."""
        with self._lock:
            s = self.settings
            if not (s.rate_429 or s.rate_5xx or s.rate_timeout):
                return None, 0
            pick = self._rng.random()
            if pick < s.rate_429:
                return "429", 429
            if pick < s.rate_429 + s.rate_5xx:
                return "5xx", 503 if self._rng.random() < 0.25 else 500
            if pick < s.rate_429 + s.rate_5xx + s.rate_timeout:
                return "timeout", 504
            return None, 0
