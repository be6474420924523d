"""Codat events: their payloads (as the Platform spec's webhook schemas give them) and their publishing to
the consumers that want them, through the delivery faults, into the delivery engine.

The envelope is `{id, eventType, generatedDate, payload}`; `generatedDate` is the sandbox clock's time of
the change. Nothing is built when no consumer could receive it, so a sandbox without consumers pays
nothing for events.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from codat_sandbox.delivery import Delivery, DeliveryEngine
from codat_sandbox.faults import NO_WEBHOOK_FAULT, FaultInjector, WebhookFate
from codat_sandbox.webhooks import Consumer, ConsumerRegistry, signing_key

PORTAL = "https://app.codat.io/companies/"
PRODUCT_NAMES = {
    "lending": "Lending",
    "bank-feeds": "Bank Feeds",
    "spend-insights": "Spend Insights",
    "payables": "Payables",
    "expenses": "Expenses",
    "accounting": "Accounting",
    "banking": "Banking",
}


def company_reference(company: dict[str, Any]) -> dict[str, Any]:
    """`referenceCompany` of connection and read events."""
    return {
        "id": company["id"],
        "name": company.get("name"),
        "description": company.get("description"),
        "links": {"portal": PORTAL + str(company["id"])},
        "tags": company.get("tags") or {},
    }


def company_details(company: dict[str, Any]) -> dict[str, Any]:
    """The payload of company.created / company.deleted: the company without its connections."""
    return {k: v for k, v in company.items() if k != "dataConnections"}


def connection_payload(company: dict[str, Any], connection: dict[str, Any]) -> dict[str, Any]:
    return {"referenceCompany": company_reference(company), "connection": connection}


def product_payload(company: dict[str, Any], product_id: str) -> dict[str, Any]:
    return {
        "id": company["id"],
        "name": company.get("name"),
        "description": company.get("description"),
        "productId": product_id,
        "productName": product_name(product_id),
        "products": list(company.get("products") or []),
    }


def read_entry(connection_id: str, data_type: str, status: str, message: str | None, company_id: str) -> dict:
    """One `dataTypes` item of read.completed: an issue for a pull that did not complete."""
    issues = (
        []
        if status == "Complete"
        else [{"type": status, "message": message or status, "links": {"portal": PORTAL + company_id}}]
    )
    return {
        "connectionId": connection_id,
        "dataType": data_type,
        "recordsModified": status == "Complete",
        "status": status,
        "issues": issues,
    }


def read_payload(company: dict[str, Any], modified_from: str | None, entries: list[dict]) -> dict[str, Any]:
    return {
        "referenceCompany": company_reference(company),
        "modifiedFromDate": modified_from,
        "dataTypes": entries,
    }


def product_name(product_id: str) -> str:
    return PRODUCT_NAMES.get(product_id) or product_id.replace("-", " ").title()


class EventSink(Protocol):
    """What the world tells about its changes (`World.events`)."""

    @property
    def active(self) -> bool: ...

    def publish(
        self, event_type: str, generated: str, payload: dict[str, Any], tags: dict[str, str]
    ) -> None: ...

    def publish_json(
        self, event_type: str, generated: str, payload_json: str, tags: dict[str, str]
    ) -> None: ...

    def publish_many(self, events: Iterable[tuple[str, str, str, str]]) -> None: ...


#: deliveries handed to the engine at once when publishing in bulk (its workers start on the first ones)
SUBMIT_BATCH = 2_000


class NoEvents:
    """The sink of a world nobody listens to."""

    active = False

    def publish(self, event_type: str, generated: str, payload: dict[str, Any], tags: dict[str, str]) -> None:
        return None

    def publish_json(self, event_type: str, generated: str, payload_json: str, tags: dict[str, str]) -> None:
        return None

    def publish_many(self, events: Iterable[tuple[str, str, str, str]]) -> None:
        return None


def envelope(webhook_id: str, event_type: str, generated: str, payload_json: str) -> bytes:
    """The event body: `{id, eventType, generatedDate, payload}` around an already encoded payload."""
    return (
        f'{{"id": "{webhook_id}", "eventType": {json.dumps(event_type)}, "generatedDate": "{generated}", '
        f'"payload": {payload_json}}}'
    ).encode()


class EventPublisher:
    """Events to deliveries: one per consumer that wants the event, each through the webhook faults."""

    def __init__(self, consumers: ConsumerRegistry, engine: DeliveryEngine, faults: FaultInjector) -> None:
        self.consumers = consumers
        self.engine = engine
        self.faults = faults
        self._keys: dict[str, tuple[str, bytes]] = {}

    @property
    def active(self) -> bool:
        return self.consumers.active

    def publish(self, event_type: str, generated: str, payload: dict[str, Any], tags: dict[str, str]) -> None:
        if self.consumers.active:
            self.publish_json(event_type, generated, json.dumps(payload), tags)

    def publish_json(self, event_type: str, generated: str, payload_json: str, tags: dict[str, str]) -> None:
        """Publish an event whose payload is already JSON text (the scheduler builds it in SQL)."""
        targets = self.consumers.matching(event_type, tags)
        if not targets:
            return
        webhook_id = str(uuid.uuid4())
        body = envelope(webhook_id, event_type, generated, payload_json)
        for consumer in targets:
            self._deliver(
                Delivery(webhook_id, event_type, consumer.id, consumer.url, self._key(consumer), body)
            )

    def publish_many(self, events: Iterable[tuple[str, str, str, str]]) -> None:
        """Publish `(event_type, generated, payload_json, tags_json)` in bulk (the scheduler's rounds):
        the same as one by one, with the engine's lock taken once per batch, not per delivery."""
        consumers = [c for c in self.consumers.all() if not c.disabled]
        by_tags = any(c.company_tags for c in consumers)
        batch: list[Delivery] = []
        for event_type, generated, payload_json, tags_json in events:
            tags = json.loads(tags_json) if by_tags else {}
            targets = [c for c in consumers if c.wants(event_type, tags)]
            if not targets:
                continue
            webhook_id = str(uuid.uuid4())
            body = envelope(webhook_id, event_type, generated, payload_json)
            for consumer in targets:
                delivery = Delivery(
                    webhook_id, event_type, consumer.id, consumer.url, self._key(consumer), body
                )
                fate = self.faults.draw_webhook()
                if fate is NO_WEBHOOK_FAULT:
                    batch.append(delivery)
                    if len(batch) >= SUBMIT_BATCH:
                        self.engine.submit(batch)
                        batch = []
                else:
                    self._deliver(delivery, fate)
        if batch:
            self.engine.submit(batch)

    def _key(self, consumer: Consumer) -> bytes:
        secret = consumer.secret.get_secret_value()
        cached = self._keys.get(consumer.id)
        if cached is None or cached[0] != secret:
            cached = self._keys[consumer.id] = (secret, signing_key(consumer.secret))
        return cached[1]

    def _deliver(self, delivery: Delivery, fate: WebhookFate | None = None) -> None:
        """Submit `delivery` as its fate (drawn now unless given) says: dropped, doubled, held, delayed."""
        fate = fate if fate is not None else self.faults.draw_webhook()
        if fate.drop:
            self.engine.record(
                [
                    {
                        "id": delivery.webhook_id,
                        "event_type": delivery.event_type,
                        "consumer_id": delivery.consumer_id,
                        "attempt": 0,
                        "status": None,
                        "outcome": "dropped",
                    }
                ]
            )
            return
        copies = [delivery]
        if fate.duplicate:
            twin = Delivery(
                delivery.webhook_id,
                delivery.event_type,
                delivery.consumer_id,
                delivery.url,
                delivery.key,
                delivery.body,
                duplicate=True,
            )
            copies.append(twin)
        self.engine.submit(copies, delay=fate.delay_seconds, hold=fate.reorder and not fate.delay_seconds)
