"""A deterministic world: companies, connections, company sync settings and pull history.

Everything comes from `random.Random(seed)` (uuids too) and times are relative to the sandbox clock at the
reset, so the same seed and the same frozen clock give byte-identical JSON. Companies and connections are
built eagerly (fast enough for 100k companies); each company's pull history is built on first use from its
own `Random(f"{seed}:{company_id}")`, agreeing with the connection `lastSync` chosen here.
"""

from __future__ import annotations

import calendar
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codat_sandbox.codat_types import DATA_TYPE_SOURCE
from codat_sandbox.platforms import BANK_SOURCE_IDS, Platform, by_source_type

DAY = 86_400
HOUR = 3_600

_ADJECTIVES = (
    "Harbour",
    "Northern",
    "Bright",
    "Oak",
    "Summit",
    "Riverside",
    "Copper",
    "Blue",
    "Granite",
    "Meadow",
    "Silver",
    "Atlas",
    "Hillside",
    "Crown",
    "Pioneer",
    "Lantern",
    "Willow",
    "Kestrel",
)
_NOUNS = (
    "Bakery",
    "Logistics",
    "Joinery",
    "Coffee",
    "Studios",
    "Engineering",
    "Dental",
    "Garden Centre",
    "Print Works",
    "Brewing",
    "Textiles",
    "Motors",
    "Pharmacy",
    "Florists",
    "Consulting",
    "Outfitters",
)
_SUFFIXES = ("Ltd", "Limited", "LLP", "& Co", "GmbH", "SAS", "BV", "Inc")
_USERS = ("sandbox-admin", "onboarding-service", "ops@lender.example", None)
_PRODUCTS = (
    ["lending"],
    ["lending", "spend-insights"],
    ["bank-feeds"],
    ["lending", "bank-feeds"],
    ["spend-insights"],
    [],
)
_REGIONS = (("uk", 50), ("eu", 35), ("us", 15))
_TEAMS = ("invoice-finance", "sme-lending", "cards")


def _setting(data_type: str, order: int, *, schedule: int = 24, first_link: bool = True) -> dict[str, Any]:
    setting: dict[str, Any] = {
        "dataType": data_type,
        "fetchOnFirstLink": first_link,
        "syncSchedule": schedule,
        "syncOrder": order,
    }
    if data_type in ("balanceSheet", "profitAndLoss"):
        setting["monthsToSync"] = 24
    return setting


def _profile(*specs: str | tuple[str, int, bool]) -> tuple[dict[str, Any], ...]:
    out = []
    for order, spec in enumerate(specs):
        if isinstance(spec, str):
            out.append(_setting(spec, order))
        else:
            data_type, schedule, first_link = spec
            out.append(_setting(data_type, order, schedule=schedule, first_link=first_link))
    return tuple(out)


_WEEKLY = 168
#: Company sync settings as seeded. Each deliberately schedules more than any product needs (journals,
#: purchaseOrders, commerce-disputes...), which is what consent reconciliation has to find and fix.
SETTINGS_PROFILES: tuple[tuple[dict[str, Any], ...], ...] = (
    _profile(
        "invoices",
        "bills",
        "balanceSheet",
        "profitAndLoss",
        ("chartOfAccounts", _WEEKLY, True),
        ("company", _WEEKLY, True),
        "customers",
        "suppliers",
        "bankAccounts",
        "bankTransactions",
        "payments",
        "billPayments",
        "creditNotes",
        ("taxRates", _WEEKLY, True),
        "journals",
        "journalEntries",
        "purchaseOrders",
        "salesOrders",
        ("trackingCategories", _WEEKLY, True),
        "accountTransactions",
        "banking-accounts",
        "banking-accountBalances",
        "banking-transactions",
        ("banking-transactionCategories", _WEEKLY, True),
        ("commerce-companyInfo", _WEEKLY, True),
        "commerce-orders",
        "commerce-payments",
        "commerce-transactions",
        "commerce-customers",
        "commerce-disputes",
        "commerce-products",
    ),
    _profile(
        "invoices",
        "bills",
        "balanceSheet",
        "profitAndLoss",
        ("chartOfAccounts", _WEEKLY, True),
        ("company", _WEEKLY, True),
        "customers",
        "suppliers",
        "bankTransactions",
        "journals",
        "purchaseOrders",
        ("items", _WEEKLY, False),
        "directCosts",
        "banking-accounts",
        "banking-accountBalances",
        "banking-transactions",
        "commerce-orders",
        "commerce-payments",
        "commerce-disputes",
        ("commerce-locations", _WEEKLY, False),
    ),
    _profile(
        "balanceSheet",
        "profitAndLoss",
        ("cashFlowStatement", _WEEKLY, True),
        ("chartOfAccounts", _WEEKLY, True),
        ("company", _WEEKLY, True),
        "invoices",
        "journalEntries",
        "journals",
        "purchaseOrders",
        "banking-accounts",
        "banking-transactions",
        ("banking-transactionCategories", _WEEKLY, True),
        ("commerce-companyInfo", _WEEKLY, True),
        "commerce-transactions",
        "commerce-disputes",
    ),
    _profile(
        "invoices",
        ("company", _WEEKLY, True),
        "bankAccounts",
        ("journals", 24, False),
        "purchaseOrders",
        "billCreditNotes",
        "banking-accounts",
        "banking-accountBalances",
        "banking-transactions",
        "commerce-orders",
        "commerce-disputes",
        ("commerce-customers", 24, False),
    ),
)


def profile_settings(profile: int) -> list[dict[str, Any]]:
    return [dict(s) for s in SETTINGS_PROFILES[profile % len(SETTINGS_PROFILES)]]


def fmt(epoch: int) -> str:
    """Epoch seconds as the sandbox's stored time text."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse(text: str) -> int:
    """Stored time text back to epoch seconds."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)


def rng_uuid(rng: random.Random) -> str:
    """A version-4 uuid drawn from `rng` (same text as `uuid.UUID(int=..., version=4)`, faster)."""
    h = f"{(rng.getrandbits(128) & _VERSION_MASK) | _VERSION_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def deauthorization_error(at: str, message: str | None = None) -> dict[str, Any]:
    return {
        "statusCode": "401",
        "statusText": "Unauthorized",
        "errorMessage": message
        or "Access to the platform was revoked or has expired; the customer must "
        "re-authorize the connection.",
        "erroredOnUtc": at,
        "status": "Active",
        "resolvedOnUtc": None,
    }


@dataclass
class World:
    companies: list[tuple]
    connections: list[tuple]


def _weighted(rng: random.Random, options: Sequence[tuple[Any, int]]) -> Any:
    total = sum(w for _, w in options)
    pick = rng.random() * total
    for value, weight in options:
        pick -= weight
        if pick < 0:
            return value
    return options[-1][0]


_PLATFORMS = {st: by_source_type(st) for st in ("Accounting", "Banking", "Commerce")}


def _connection(rng: random.Random, company_id: str, source_type: str, now: int) -> tuple[tuple, int]:
    platform: Platform = rng.choice(_PLATFORMS[source_type])
    conn_id = rng_uuid(rng)
    r = rng.random()
    age = rng.randint(2 * HOUR, 200 * DAY)
    if source_type == "Banking":
        if age > 90 * DAY:  # past the Open Banking 90 days: many lapsed, some still linked (reconfirmed?)
            status = "Linked" if r < 0.45 else "Deauthorized" if r < 0.85 else "Unlinked"
        else:
            status = (
                "Linked"
                if r < 0.80
                else "Deauthorized"
                if r < 0.87
                else "Unlinked"
                if r < 0.92
                else "PendingAuth"
            )
    else:
        status = (
            "Linked"
            if r < 0.78
            else "Deauthorized"
            if r < 0.88
            else "Unlinked"
            if r < 0.94
            else "PendingAuth"
        )
    if status == "PendingAuth":
        age = rng.randint(HOUR, 14 * DAY)
    created = now - age
    earliest = created + 300
    errors: list[dict[str, Any]] = []
    last: int | None
    if status == "PendingAuth":
        last = None
    elif status == "Linked":
        if source_type == "Accounting" and age > 75 * DAY and rng.random() < 0.25:
            last = now - rng.randint(61 * DAY, min(age - DAY, 150 * DAY))  # stale: tokens at risk
        else:
            last = now - rng.randint(30 * 60, 36 * HOUR)
    else:
        if source_type == "Banking" and age > 90 * DAY and status == "Deauthorized":
            ended = min(created + 90 * DAY + rng.randint(0, 6 * HOUR), now - HOUR)  # 90-day consent ran out
        else:
            ended = now - rng.randint(DAY, max(DAY + 1, min(age - HOUR, 60 * DAY)))
        last = ended - rng.randint(HOUR, DAY)
        if status == "Deauthorized":
            errors.append(deauthorization_error(fmt(max(ended, earliest))))
    if last is not None and last < earliest:
        last = earliest if earliest < now else None
    source_id = rng.choice(BANK_SOURCE_IDS) if source_type == "Banking" else platform.source_id
    row = (
        conn_id,
        company_id,
        platform.integration_id,
        platform.key,
        source_id,
        platform.name,
        source_type,
        status,
        fmt(created),
        fmt(last) if last is not None else None,
        json.dumps(errors) if errors else "[]",
    )
    return row, created


def build_world(seed: int, companies: int, now: int) -> World:
    """Companies and connections as rows for `Store.rebuild`, all relative to `now` (epoch seconds)."""
    rng = random.Random(seed)
    company_rows: list[tuple] = []
    connection_rows: list[tuple] = []
    for index in range(companies):
        company_id = rng_uuid(rng)
        conns = [_connection(rng, company_id, "Accounting", now)]
        conns += [
            _connection(rng, company_id, "Banking", now)
            for _ in range(_weighted(rng, ((0, 30), (1, 40), (2, 20), (3, 10))))
        ]
        conns += [
            _connection(rng, company_id, "Commerce", now)
            for _ in range(_weighted(rng, ((0, 60), (1, 30), (2, 10))))
        ]
        created_at = min(c[1] for c in conns) - rng.randint(60, 3 * DAY)
        syncs = [c[0][9] for c in conns if c[0][9] is not None]
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_SUFFIXES)}"
        description = None if rng.random() < 0.3 else f"Sandbox customer {index + 1}"
        tags = {"region": _weighted(rng, _REGIONS), "owningTeam": rng.choice(_TEAMS)}
        company_rows.append(
            (
                company_id,
                name,
                description,
                fmt(created_at),
                rng.choice(_USERS),
                json.dumps(rng.choice(_PRODUCTS)),
                json.dumps(tags),
                max(syncs) if syncs else None,
                rng.randrange(len(SETTINGS_PROFILES)),
                0,
            )
        )
        connection_rows.extend(c[0] for c in conns)
    return World(company_rows, connection_rows)


_ERRORS = (
    ("FetchError", 5, "The platform returned an error while fetching data."),
    ("RateLimitError", 4, "The platform's rate limit was reached; the pull will be retried."),
    ("InternalError", 3, "An internal error occurred while processing the data."),
    ("PermissionsError", 1, "The connection lacks the permissions to read this data type."),
)
_ERRORED = tuple((status, weight) for status, weight, _ in _ERRORS)
_ERROR_TEXT = {status: text for status, _, text in _ERRORS}
AUTH_ERROR_TEXT = "The connection is not authorized: the customer must re-authorize it (see its linkUrl)."


def history(seed: int, company_id: str, profile: int, connections: Sequence[Any], now: int) -> list[tuple]:
    """Past pull operations of one company, as `pulls` rows.

    For each connection that has synced, a few pulls per scheduled data type of its source type, spaced by
    the schedule, the latest Complete one finishing exactly at the connection's `lastSync`; mostly Complete,
    some errors; a Deauthorized connection also shows AuthError pulls after access was lost.
    """
    rng = random.Random(f"{seed}:{company_id}")
    settings = profile_settings(profile)
    rows: list[tuple] = []
    for conn in connections:
        if conn["last_sync"] is None or conn["status"] == "PendingAuth":
            continue
        created = parse(conn["created"])
        last = parse(conn["last_sync"])
        types = [s for s in settings if DATA_TYPE_SOURCE.get(s["dataType"]) == conn["source_type"]]
        for k, setting in enumerate(types):
            latest = last if k == 0 else last - rng.randint(0, HOUR)
            for j in range(rng.randint(1, 3)):
                completed = latest - j * setting["syncSchedule"] * HOUR - (rng.randint(0, 600) if j else 0)
                requested = completed - rng.randint(20, 900)
                if requested < created:
                    break
                if (k == 0 and j == 0) or rng.random() < 0.85:
                    status, message = "Complete", None
                else:
                    status = _weighted(rng, _ERRORED)
                    message = _ERROR_TEXT[status]
                rows.append(
                    _pull_row(
                        rng_uuid(rng),
                        company_id,
                        conn["id"],
                        setting["dataType"],
                        status,
                        message,
                        requested,
                        completed,
                    )
                )
        if conn["status"] == "Deauthorized":
            errors = json.loads(conn["errors"] or "[]")
            lost = parse(errors[-1]["erroredOnUtc"]) if errors else last + HOUR
            for setting in types[:3]:
                requested = lost + rng.randint(600, DAY)
                if requested + 30 >= now:
                    continue
                rows.append(
                    _pull_row(
                        rng_uuid(rng),
                        company_id,
                        conn["id"],
                        setting["dataType"],
                        "AuthError",
                        AUTH_ERROR_TEXT,
                        requested,
                        requested + 30,
                    )
                )
    return rows


def _pull_row(
    pull_id: str,
    company_id: str,
    connection_id: str,
    data_type: str,
    status: str,
    message: str | None,
    requested: int,
    completed: int,
) -> tuple:
    return (
        pull_id,
        company_id,
        connection_id,
        data_type,
        status,
        status,
        fmt(requested),
        fmt(requested),
        fmt(completed),
        fmt(completed),
        message,
        None,
    )
