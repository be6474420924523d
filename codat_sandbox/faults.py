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
    #: fractions of webhook deliveries (per event and consumer) never sent, sent twice with the same
    #: webhook-id, held back behind later ones, or sent `webhook_delay_seconds` (real time) late
    webhook_drop: float = 0.0
    webhook_duplicate: float = 0.0
    webhook_reorder: float = 0.0
    webhook_delay: float = 0.0
    webhook_delay_seconds: float = 5.0

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
        for name in FRACTIONS:
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
        for name, default in (("timeout_seconds", 10.0), ("webhook_delay_seconds", 5.0)):
            value = body.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86_400:
                raise ValueError(f"{name}: must be a number >= 0 and <= 86400")
            values[name] = float(value)
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


FRACTIONS = (
    "rate_429",
    "rate_5xx",
    "rate_timeout",
    "webhook_drop",
    "webhook_duplicate",
    "webhook_reorder",
    "webhook_delay",
)
Fault = Literal["429", "5xx", "timeout"]


@dataclass(frozen=True)
class WebhookFate:
    """What the faults do to one delivery: drawn independently, a dropped one is nothing else."""

    drop: bool = False
    duplicate: bool = False
    reorder: bool = False
    delay_seconds: float = 0.0


NO_WEBHOOK_FAULT = WebhookFate()


class FaultInjector:
    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(settings or FaultSettings())

    def configure(self, settings: FaultSettings) -> None:
        with self._lock:
            self.settings = settings
            self._rng = random.Random(settings.seed)
            # a stream of its own: turning webhook faults on does not change which API requests fail
            self._webhook_rng = random.Random(f"webhooks-{settings.seed}")

    def draw_webhook(self) -> WebhookFate:
        with self._lock:
            s = self.settings
            if not (s.webhook_drop or s.webhook_duplicate or s.webhook_reorder or s.webhook_delay):
                return NO_WEBHOOK_FAULT
            rng = self._webhook_rng
            if rng.random() < s.webhook_drop:
                return WebhookFate(drop=True)
            duplicate = rng.random() < s.webhook_duplicate
            reorder = rng.random() < s.webhook_reorder
            delay = s.webhook_delay_seconds if rng.random() < s.webhook_delay else 0.0
            return WebhookFate(duplicate=duplicate, reorder=reorder, delay_seconds=delay)

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
