"""The product catalog: products (use-cases), the Codat data types each reads, retention, expiry policy.

The shipped catalog is `consent_lifecycle/catalog.toml`; a deployment may point at its own file
(setting `CONSENT_CATALOG`). A catalog is validated completely when loaded: every problem is reported at
once, each naming the file, the product (or policy) and the bad value, and nothing half-loaded escapes.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from consent_lifecycle.datatypes import DATA_TYPES, SOURCE_TYPES

SHIPPED: Final[str] = "catalog.toml"
#: how a policy's expiry is reset: `reconfirmation` (UK AISP: the customer reconfirms, or re-authorizes)
#: or `reauthentication` (EU: only a new authorization at the bank resets it)
BASES: Final[tuple[str, ...]] = ("reconfirmation", "reauthentication")
PRODUCT_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")

_PRODUCT_FIELDS: Final[dict[str, bool]] = {  # field -> mandatory
    "key": True, "name": True, "description": False, "required": True, "optional": False,
    "retention_days": True,
}
_TOP_FIELDS: Final[dict[str, bool]] = {
    "version": True, "product": True, "expiry": True, "pulls": False, "data_types": False,
}
_WORDS_FIELDS: Final[dict[str, bool]] = {"name": True, "description": True}
_PULLS_FIELDS: Final[dict[str, bool]] = {"freshness_hours": False, "sync_schedule_hours": False}
_EXPIRY_FIELDS: Final[dict[str, bool]] = {
    "warning_lead_days": True, "default_jurisdiction": True, "stale_after_days": True, "policy": False,
}
_POLICY_FIELDS: Final[dict[str, bool]] = {
    "source_type": True, "jurisdiction": True, "period_days": True, "basis": True,
}


class CatalogError(ValueError):
    """A catalog that cannot be used. `problems` lists every problem found, each a full sentence."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        self.problems = list(problems) or [message]
        super().__init__(message)


class UnknownProductError(CatalogError, KeyError):
    """A product key the catalog does not define."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class Product:
    key: str
    name: str
    description: str
    required: frozenset[str]
    optional: frozenset[str]
    retention_days: int

    @property
    def data_types(self) -> frozenset[str]:
        """Every data type the product may read: required and optional."""
        return self.required | self.optional

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)

    def row(self) -> dict[str, Any]:
        return {
            "key": self.key, "name": self.name, "description": self.description,
            "required": sorted(self.required), "optional": sorted(self.optional),
            "retention_days": self.retention_days,
        }


@dataclass(frozen=True)
class DataTypeWords:
    """A data type as a customer reads it: "Balance sheets", "your assets, liabilities and equity ..."."""

    key: str
    name: str
    description: str


@dataclass(frozen=True)
class ExpiryPolicy:
    """Connections of `source_type` in `jurisdiction` lose consent `period_days` after it was last renewed."""

    source_type: str
    jurisdiction: str
    period_days: int
    basis: str

    @property
    def period(self) -> timedelta:
        return timedelta(days=self.period_days)

    def renewed_at(self, last_authorized_at: datetime | None, last_reconfirmed_at: datetime | None) -> datetime | None:
        """When consent was last renewed: the later of authorization and (for `reconfirmation`) reconfirmation."""
        anchors = [last_authorized_at]
        if self.basis == "reconfirmation":
            anchors.append(last_reconfirmed_at)
        present = [a for a in anchors if a is not None]
        return max(present) if present else None

    def expires_at(self, last_authorized_at: datetime | None, last_reconfirmed_at: datetime | None) -> datetime | None:
        """Renewal + period; None when the connection was never authorized or reconfirmed."""
        renewed = self.renewed_at(last_authorized_at, last_reconfirmed_at)
        return None if renewed is None else renewed + self.period

    def row(self) -> dict[str, Any]:
        return {
            "source_type": self.source_type, "jurisdiction": self.jurisdiction,
            "period_days": self.period_days, "basis": self.basis,
        }


@dataclass(frozen=True)
class Catalog:
    version: int
    products: Mapping[str, Product]
    policies: tuple[ExpiryPolicy, ...]
    #: descending, e.g. (7, 1)
    warning_lead_days: tuple[int, ...]
    default_jurisdiction: str
    stale_after_days: int
    #: an entitled data type whose last successful pull is older than this is pulled again
    freshness_hours: int = 48
    #: the `syncSchedule` given to a data type reconciliation adds to a company's sync settings
    sync_schedule_hours: int = 24
    #: each data type a product declares, in plain words (`[data_types.<key>]`)
    words: Mapping[str, DataTypeWords] = field(default_factory=lambda: MappingProxyType({}))
    #: where it was loaded from (for messages)
    source: str = field(default="<catalog>", compare=False)

    def describe(self, key: str) -> DataTypeWords:
        """`key` in plain words; a type the catalog has no words for is shown by its key."""
        return self.words.get(key) or DataTypeWords(key, key, "")

    def product(self, key: str) -> Product:
        """The product `key`; UnknownProductError naming it and listing the known keys otherwise."""
        try:
            return self.products[key]
        except (KeyError, TypeError):
            raise self._unknown([key]) from None

    def products_for(self, keys: Iterable[str]) -> list[Product]:
        """The products `keys`, in the order given; one error naming every unknown key."""
        keys = list(keys)
        unknown = [k for k in keys if not isinstance(k, str) or k not in self.products]
        if unknown:
            raise self._unknown(unknown)
        return [self.products[k] for k in keys]

    def _unknown(self, keys: list[Any]) -> UnknownProductError:
        hints = []
        for key in keys:
            close = difflib.get_close_matches(str(key), list(self.products), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        noun = "product" if len(keys) == 1 else "products"
        return UnknownProductError(
            f"unknown {noun} {', '.join(hints)}; known products: {', '.join(self.products)}"
        )

    def policy_for(self, source_type: str, jurisdiction: str | None = None) -> ExpiryPolicy | None:
        """The expiry policy for connections of `source_type` of a company in `jurisdiction`.

        No jurisdiction (no `region` tag) means the default one; a jurisdiction without a policy of its
        own falls back to the default jurisdiction's policy (warning too early beats never warning).
        None: connections of that source type do not expire (e.g. Accounting).
        """
        wanted = (jurisdiction or self.default_jurisdiction).strip().lower()
        for candidate in (wanted, self.default_jurisdiction):
            for policy in self.policies:
                if policy.source_type == source_type and policy.jurisdiction == candidate:
                    return policy
        return None

    @property
    def data_types(self) -> frozenset[str]:
        """Every data type some product may read."""
        return frozenset().union(*(p.data_types for p in self.products.values()))

    @property
    def unused_data_types(self) -> tuple[str, ...]:
        """Codat data types no product reads (in Codat's order): never to be pulled."""
        used = self.data_types
        return tuple(k for k in DATA_TYPES if k not in used)

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per product, in file order (for `catalog show --json`)."""
        return [p.row() for p in self.products.values()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "products": self.rows(),
            "expiry": {
                "warning_lead_days": list(self.warning_lead_days),
                "default_jurisdiction": self.default_jurisdiction,
                "stale_after_days": self.stale_after_days,
                "policies": [p.row() for p in self.policies],
            },
            "pulls": {"freshness_hours": self.freshness_hours, "sync_schedule_hours": self.sync_schedule_hours},
            "data_types": {k: {"name": w.name, "description": w.description} for k, w in self.words.items()},
        }


# --- loading -----------------------------------------------------------------------------------------


def shipped_path() -> Path:
    return Path(str(files("consent_lifecycle") / SHIPPED))


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Load and validate the catalog at `path` (None: the shipped one). CatalogError if it is unusable."""
    target = shipped_path() if path is None else Path(path)
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        raise CatalogError(f"{target}: catalog file not found") from None
    except IsADirectoryError:
        raise CatalogError(f"{target}: is a directory, not a catalog file") from None
    except OSError as exc:
        raise CatalogError(f"{target}: cannot read the catalog: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{target}: not UTF-8 text (byte {exc.start})") from None
    return parse_catalog(text, source=str(target))


def parse_catalog(text: str, source: str = "<catalog>") -> Catalog:
    """Parse and validate catalog TOML `text`; `source` names it in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: malformed TOML: {exc}") from None
    return _Parser(source).catalog(document)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _suggest(value: Any, choices: Iterable[str]) -> str:
    if not isinstance(value, str):
        return ""
    choices = list(choices)
    folded = {c.lower(): c for c in choices}
    close = [folded[value.lower()]] if value.lower() in folded else difflib.get_close_matches(value, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, where: str, problem: str) -> None:
        self.problems.append(f"{self.source}: {where}: {problem}" if where else f"{self.source}: {problem}")

    def fields(self, where: str, table: dict[str, Any], known: dict[str, bool]) -> None:
        for name in table:
            if name not in known:
                self.fail(where, f"unknown field {name!r}{_suggest(name, known)}; fields are {', '.join(known)}")
        for name, mandatory in known.items():
            if mandatory and name not in table:
                self.fail(where, f"missing required field {name!r}")

    def catalog(self, document: dict[str, Any]) -> Catalog:
        self.fields("", document, _TOP_FIELDS)
        version = document.get("version")
        if "version" in document and not (_is_int(version) and version >= 1):
            self.fail("version", f"must be a positive integer, got {version!r}")
        products = self.products(document.get("product"))
        expiry = document.get("expiry", {})
        if not isinstance(expiry, dict):
            self.fail("expiry", f"must be a table ([expiry]), got {expiry!r}")
            expiry = {}
        settings = self.expiry(expiry) if "expiry" in document else None
        pulls = self.pulls(document.get("pulls", {}))
        words = self.words(document.get("data_types", {}), products)
        if self.problems:
            count = len(self.problems)
            head = self.problems[0] if count == 1 else f"{self.source}: {count} problems in the catalog"
            message = head if count == 1 else "\n".join([head, *(f"  - {p}" for p in self.problems)])
            raise CatalogError(message, self.problems)
        assert settings is not None
        policies, leads, default_jurisdiction, stale = settings
        return Catalog(
            version=version,
            products=MappingProxyType(products),
            policies=policies,
            warning_lead_days=leads,
            default_jurisdiction=default_jurisdiction,
            stale_after_days=stale,
            **pulls,
            words=MappingProxyType(words),
            source=self.source,
        )

    # products

    def products(self, entries: Any) -> dict[str, Product]:
        if entries is None:
            return {}
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            self.fail("product", "must be an array of tables: write each product as [[product]]")
            return {}
        if not entries:
            self.fail("product", "the catalog defines no products")
        products: dict[str, Product] = {}
        first_seen: dict[str, int] = {}
        for number, entry in enumerate(entries, start=1):
            key = entry.get("key")
            where = f"product {key!r}" if isinstance(key, str) and key else f"product #{number} (no key)"
            if isinstance(key, str) and key in first_seen:
                self.fail(where, f"duplicate product {key!r} (product #{first_seen[key]} has the same key)")
                continue
            if isinstance(key, str):
                first_seen[key] = number
            product = self.product(where, entry)
            if product is not None:
                products[product.key] = product
        return products

    def product(self, where: str, entry: dict[str, Any]) -> Product | None:
        before = len(self.problems)
        self.fields(where, entry, _PRODUCT_FIELDS)
        key = entry.get("key")
        if "key" in entry and not (isinstance(key, str) and PRODUCT_KEY.match(key)):
            self.fail(where, f"key {key!r} is not a product key (lower-case letters, digits and '-')")
        name = entry.get("name")
        if "name" in entry and not (isinstance(name, str) and name.strip()):
            self.fail(where, f"name must be a non-empty string, got {name!r}")
        description = entry.get("description", "")
        if not isinstance(description, str):
            self.fail(where, f"description must be a string, got {description!r}")
        required = self.data_type_list(where, "required", entry.get("required"), may_be_empty=False)
        optional = self.data_type_list(where, "optional", entry.get("optional", []), may_be_empty=True)
        for data_type in sorted(required & optional):
            self.fail(where, f"data type {data_type!r} is in both required and optional")
        retention = entry.get("retention_days")
        if "retention_days" in entry and not (_is_int(retention) and retention >= 0):
            self.fail(where, f"retention_days must be a whole number of days >= 0, got {retention!r}")
        if len(self.problems) > before:
            return None
        return Product(
            key=key, name=name.strip(), description=description.strip(), required=required,
            optional=optional, retention_days=retention,
        )

    def data_type_list(self, where: str, field_name: str, value: Any, *, may_be_empty: bool) -> frozenset[str]:
        if value is None:  # missing: reported by fields()
            return frozenset()
        if not isinstance(value, list):
            self.fail(where, f"{field_name} must be a list of data type keys, got {value!r}")
            return frozenset()
        if not value and not may_be_empty:
            self.fail(where, f"{field_name} must name at least one data type")
        seen: set[str] = set()
        for item in value:
            if not isinstance(item, str):
                self.fail(where, f"{field_name} holds {item!r}, which is not a data type key (a string)")
            elif item not in DATA_TYPES:
                self.fail(where, f"unknown data type {item!r} in {field_name}{_suggest(item, DATA_TYPES)}")
            elif item in seen:
                self.fail(where, f"data type {item!r} is listed twice in {field_name}")
            else:
                seen.add(item)
        return frozenset(seen)

    # data types in plain words

    def words(self, table: Any, products: dict[str, Product]) -> dict[str, DataTypeWords]:
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            self.fail("data_types", "must be tables: write each data type as [data_types.<key>]")
            return {}
        found = {}
        for key, entry in table.items():
            where = f"[data_types.{key}]"
            if key not in DATA_TYPES:
                self.fail(where, f"unknown data type {key!r}{_suggest(key, DATA_TYPES)}")
                continue
            self.fields(where, entry, _WORDS_FIELDS)
            bad = [n for n in _WORDS_FIELDS if n in entry and not (isinstance(entry[n], str) and entry[n].strip())]
            for name in bad:
                self.fail(where, f"{name} must be a non-empty string, got {entry[name]!r}")
            if not bad and set(_WORDS_FIELDS) <= set(entry):
                found[key] = DataTypeWords(key, entry["name"].strip(), entry["description"].strip())
        declared = frozenset().union(*(p.data_types for p in products.values()))
        missing = [k for k in DATA_TYPES if k in declared and k not in table]
        if missing:
            self.fail("data_types", f"no name and description for data type {', '.join(map(repr, missing))}, "
                                    "which a product declares: add a [data_types.<key>] table for each")
        return found

    # pulls

    def pulls(self, table: Any) -> dict[str, int]:
        if not isinstance(table, dict):
            self.fail("pulls", f"must be a table ([pulls]), got {table!r}")
            return {}
        self.fields("[pulls]", table, _PULLS_FIELDS)
        for name, value in table.items():
            if name in _PULLS_FIELDS and not (_is_int(value) and value > 0):
                self.fail("[pulls]", f"{name} must be a whole number of hours > 0, got {value!r}")
        return {name: value for name, value in table.items() if name in _PULLS_FIELDS}

    # expiry

    def expiry(self, table: dict[str, Any]) -> tuple[tuple[ExpiryPolicy, ...], tuple[int, ...], str, int]:
        where = "[expiry]"
        self.fields(where, table, _EXPIRY_FIELDS)
        leads = table.get("warning_lead_days", [])
        if not isinstance(leads, list) or not all(_is_int(d) and d > 0 for d in leads):
            self.fail(where, f"warning_lead_days must be a list of whole numbers of days > 0, got {leads!r}")
            leads = []
        elif len(set(leads)) != len(leads):
            self.fail(where, f"warning_lead_days lists a day twice: {leads!r}")
        default = table.get("default_jurisdiction", "")
        if "default_jurisdiction" in table and not (isinstance(default, str) and default.strip()):
            self.fail(where, f"default_jurisdiction must be a non-empty string, got {default!r}")
            default = ""
        default = default.strip().lower() if isinstance(default, str) else ""
        stale = table.get("stale_after_days")
        if "stale_after_days" in table and not (_is_int(stale) and stale > 0):
            self.fail(where, f"stale_after_days must be a whole number of days > 0, got {stale!r}")
        entries = table.get("policy", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            self.fail("expiry.policy", "must be an array of tables: write each policy as [[expiry.policy]]")
            entries = []
        policies: list[ExpiryPolicy] = []
        seen: dict[tuple[str, str], int] = {}
        for number, entry in enumerate(entries, start=1):
            policy = self.policy(number, entry)
            if policy is None:
                continue
            pair = (policy.source_type, policy.jurisdiction)
            label = f"policy #{number} ({policy.source_type}/{policy.jurisdiction})"
            if pair in seen:
                self.fail(label, f"duplicate policy for source type {pair[0]!r} in jurisdiction {pair[1]!r} "
                                 f"(policy #{seen[pair]} covers it)")
                continue
            seen[pair] = number
            too_late = [d for d in leads if _is_int(d) and d >= policy.period_days]
            if too_late:
                self.fail(label, f"warning lead of {too_late[0]} days is not shorter than period_days "
                                 f"{policy.period_days}")
            policies.append(policy)
        return tuple(policies), tuple(sorted(leads, reverse=True)), default, stale  # type: ignore[return-value]

    def policy(self, number: int, entry: dict[str, Any]) -> ExpiryPolicy | None:
        source_type, jurisdiction = entry.get("source_type"), entry.get("jurisdiction")
        label = f"policy #{number}"
        if isinstance(source_type, str) and isinstance(jurisdiction, str):
            label += f" ({source_type}/{jurisdiction})"
        before = len(self.problems)
        self.fields(label, entry, _POLICY_FIELDS)
        if "source_type" in entry and source_type not in SOURCE_TYPES:
            self.fail(label, f"unknown source type {source_type!r}{_suggest(source_type, SOURCE_TYPES)}; "
                             f"source types are {', '.join(SOURCE_TYPES)}")
        if "jurisdiction" in entry and not (isinstance(jurisdiction, str) and jurisdiction.strip()):
            self.fail(label, f"jurisdiction must be a non-empty string, got {jurisdiction!r}")
        period = entry.get("period_days")
        if "period_days" in entry and not (_is_int(period) and period > 0):
            self.fail(label, f"period_days must be a whole number of days > 0, got {period!r}")
        basis = entry.get("basis")
        if "basis" in entry and basis not in BASES:
            self.fail(label, f"unknown basis {basis!r}{_suggest(basis, BASES)}; bases are {', '.join(BASES)}")
        if len(self.problems) > before:
            return None
        return ExpiryPolicy(
            source_type=source_type, jurisdiction=jurisdiction.strip().lower(), period_days=period, basis=basis
        )
