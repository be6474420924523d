"""Everything one running sandbox holds: config, clock, world, limits, faults, counters, webhook consumers
and their deliveries, and its key."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from starlette.routing import Match, Route

from codat_sandbox.clock import SandboxClock
from codat_sandbox.config import SandboxConfig
from codat_sandbox.counters import RequestCounters
from codat_sandbox.delivery import DeliveryEngine
from codat_sandbox.events import EventPublisher
from codat_sandbox.faults import FaultInjector
from codat_sandbox.limits import ConcurrencyLimiter, RateLimiter
from codat_sandbox.scheduler import SyncScheduler
from codat_sandbox.webhooks import ConsumerRegistry
from codat_sandbox.world import World


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._key = config.api_key.encode()
        self.clock = SandboxClock(config.now)
        self.world = World(config, self.clock)
        self.rate = RateLimiter(config.rate_limit_per_minute)
        self.concurrency = ConcurrencyLimiter(config.concurrent_per_company)
        self.faults = FaultInjector()
        self.counters = RequestCounters()
        self.consumers = ConsumerRegistry(self.world.store)
        self.delivery = DeliveryEngine()
        self.world.events = EventPublisher(self.consumers, self.delivery, self.faults)
        self.scheduler = self._new_scheduler()
        self.api_routes: list[Route] = []

    def __repr__(self) -> str:
        return f"Sandbox(companies={self.world.company_count}, seed={self.world.seed})"

    def _new_scheduler(self) -> SyncScheduler:
        return SyncScheduler(
            self.world.store,
            enabled=self.config.sync_scheduler,
            pull_duration_seconds=self.config.pull_duration_seconds,
        )

    def clock_moved(self, before: str) -> dict[str, int]:
        """After the clock was set or advanced from `before`: finish what is due, then run the scheduled
        syncs that fell in between (when the scheduler is on)."""
        self.world.settle()
        return self.scheduler.run(before, self.world.now_text(), self.world.events)

    def authorized(self, header: str | None) -> bool:
        """True if `header` is `Basic base64(api_key)` for this sandbox's key."""
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic" or not token:
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded, self._key)

    def match(self, scope: dict[str, Any]) -> tuple[str | None, dict[str, Any], Any]:
        """(`METHOD /route/template`, path params, the route) of the API route `scope` reaches, or
        (None, {}, None)."""
        for route in self.api_routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return f"{scope['method']} {route.path}", child.get("path_params", {}), route
        return None, {}, None

    def reset(self, companies: int | None = None, seed: int | None = None) -> None:
        """A new world (same clock; by default the current size and seed), no faults, fresh rate-limit
        windows and request counters."""
        self.world.reset(
            self.world.company_count if companies is None else companies,
            self.world.seed if seed is None else seed,
        )
        self.faults.configure(type(self.faults.settings)())
        self.consumers.clear()
        self.delivery.cancel_all()
        self.delivery.retry_scale = 1.0
        self.scheduler = self._new_scheduler()
        self.rate.clear()
        self.counters.clear()

    def close(self) -> None:
        self.delivery.stop()
        self.world.close()
