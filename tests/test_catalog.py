"""The product catalog: the shipped file follows the seed, and every bad catalog is refused clearly."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent_lifecycle.catalog import (
    Catalog,
    CatalogError,
    ExpiryPolicy,
    UnknownProductError,
    load_catalog,
    parse_catalog,
    shipped_path,
)
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE, DATA_TYPES
from consent_lifecycle.settings import Settings

FINANCIAL_STATEMENTS = {"balanceSheet", "profitAndLoss", "cashFlowStatement"}


# --- a tiny TOML writer for building catalogs in tests --------------------------------------------------


def toml_str(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dump(document: dict[str, Any], prefix: str = "") -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in document.items() if not isinstance(v, dict) and not _is_tables(v)]
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines += ["", f"[{name}]", dump(value, prefix=f"{name}.")]
        elif _is_tables(value):
            for table in value:
                lines += ["", f"[[{name}]]", dump(table, prefix=f"{name}.")]
    return "\n".join(lines)


def base_document() -> dict[str, Any]:
    return {
        "version": 3,
        "product": [
            {"key": "dashboard", "name": "Dashboard", "description": "d",
             "required": ["invoices", "bankAccounts"], "optional": ["customers"], "retention_days": 7},
            {"key": "lending", "name": "Lending", "description": "l",
             "required": ["balanceSheet", "invoices", "banking-transactions"], "optional": [],
             "retention_days": 30},
            {"key": "bank-feeds", "name": "Bank feeds",
             "required": ["banking-accounts"], "retention_days": 14},
        ],
        "expiry": {
            "warning_lead_days": [7, 1], "default_jurisdiction": "uk", "stale_after_days": 60,
            "policy": [
                {"source_type": "Banking", "jurisdiction": "uk", "period_days": 90, "basis": "reconfirmation"},
                {"source_type": "Banking", "jurisdiction": "eu", "period_days": 180, "basis": "reauthentication"},
            ],
        },
        # every Codat data type in words, so that any edit naming a valid data type still loads
        "data_types": {key: {"name": f"The {key}", "description": f"what {key} are"} for key in DATA_TYPES},
    }


def write(tmp_path: Path, document: dict[str, Any] | str) -> Path:
    path = tmp_path / "my-catalog.toml"
    path.write_text(document if isinstance(document, str) else dump(document), encoding="utf-8")
    return path


# --- the shipped catalog ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog()


def test_the_shipped_catalog_loads(shipped: Catalog) -> None:
    assert shipped.version >= 1
    assert list(shipped.products)[:4] == ["dashboard", "lending", "bank-feeds", "spend-insights"]
    assert shipped.source == str(shipped_path())
    assert load_catalog(Settings(catalog=None).catalog) == shipped
    for product in shipped.products.values():
        assert product.data_types <= set(DATA_TYPES)
        assert not product.required & product.optional
        assert product.required and product.name and product.description


def test_the_shipped_catalog_follows_the_seed(shipped: Catalog) -> None:
    dashboard, lending = shipped.product("dashboard"), shipped.product("lending")
    bank_feeds, spend = shipped.product("bank-feeds"), shipped.product("spend-insights")
    # Dashboard and Lending share accounting types ...
    assert {"invoices", "bankAccounts", "customers", "bills"} <= dashboard.data_types & lending.data_types
    # ... but only Lending reads the financial statements
    assert FINANCIAL_STATEMENTS <= lending.required
    for other in (dashboard, bank_feeds, spend):
        assert not FINANCIAL_STATEMENTS & other.data_types, other.key
    # Lending also reads Open Banking data, and keeps data 30 days after revocation
    assert {"banking-accounts", "banking-transactions"} <= lending.data_types
    assert lending.retention_days == 30 and lending.retention == timedelta(days=30)
    # Bank feeds: banking plus the accounting platform's bank accounts
    assert {"banking-accounts", "banking-transactions", "bankAccounts"} <= bank_feeds.data_types
    sources = {DATA_TYPE_SOURCE[t] for t in spend.data_types}
    assert sources == {"Accounting", "Banking", "Commerce"} and "bills" in spend.data_types
    # some Codat data types are read by no product, so over-scheduled sync settings are detectable
    assert {"journals", "purchaseOrders", "commerce-disputes"} <= set(shipped.unused_data_types)
    assert shipped.data_types | set(shipped.unused_data_types) == set(DATA_TYPES)


def test_the_shipped_expiry_policy(shipped: Catalog) -> None:
    uk, eu = shipped.policy_for("Banking", "uk"), shipped.policy_for("Banking", "EU")
    assert uk == ExpiryPolicy("Banking", "uk", 90, "reconfirmation")
    assert eu == ExpiryPolicy("Banking", "eu", 180, "reauthentication")
    assert shipped.policy_for("Banking", None) == uk  # no region tag: the default jurisdiction
    assert shipped.policy_for("Banking", "us") == uk  # no policy of its own: the default jurisdiction's
    assert shipped.policy_for("Accounting", "uk") is None
    assert shipped.warning_lead_days == (7, 1)
    assert shipped.default_jurisdiction == "uk"
    assert shipped.stale_after_days == 60


def test_expiry_is_renewed_by_reconfirmation_only_where_the_basis_allows_it(shipped: Catalog) -> None:
    authorized, reconfirmed = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    uk, eu = shipped.policy_for("Banking", "uk"), shipped.policy_for("Banking", "eu")
    assert uk is not None and eu is not None
    assert uk.expires_at(authorized, reconfirmed) == reconfirmed + timedelta(days=90)
    assert uk.expires_at(authorized, None) == authorized + timedelta(days=90)
    assert eu.expires_at(authorized, reconfirmed) == authorized + timedelta(days=180)
    assert uk.expires_at(None, None) is None


def test_rows_are_plain_snake_case_dicts(shipped: Catalog) -> None:
    rows = shipped.rows()
    assert [r["key"] for r in rows] == list(shipped.products)
    assert set(rows[0]) == {"key", "name", "description", "required", "optional", "retention_days"}
    assert json.loads(json.dumps(rows)) == rows
    assert rows[1]["required"] == sorted(shipped.product("lending").required)
    assert json.loads(json.dumps(shipped.to_dict()))["expiry"]["warning_lead_days"] == [7, 1]


def test_unknown_products_are_named_with_the_known_ones(shipped: Catalog) -> None:
    with pytest.raises(UnknownProductError) as raised:
        shipped.product("lendng")
    message = str(raised.value)
    assert "'lendng'" in message and "did you mean 'lending'" in message
    assert "known products: dashboard, lending, bank-feeds, spend-insights" in message
    assert isinstance(raised.value, CatalogError) and isinstance(raised.value, KeyError)
    with pytest.raises(UnknownProductError, match="unknown products 'payroll', 'crm'"):
        shipped.products_for(["lending", "payroll", "crm"])
    assert [p.key for p in shipped.products_for(["lending", "dashboard"])] == ["lending", "dashboard"]


def test_the_catalog_is_immutable(shipped: Catalog) -> None:
    with pytest.raises(TypeError):
        shipped.products["x"] = shipped.product("lending")  # type: ignore[index]
    with pytest.raises(AttributeError):
        shipped.product("lending").retention_days = 0  # type: ignore[misc]


# --- bad catalogs -------------------------------------------------------------------------------------------


def edit(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(base_document())
    change(document)
    return document


def _product(document: dict[str, Any], key: str) -> dict[str, Any]:
    return next(p for p in document["product"] if p.get("key") == key)


def _set(path: str, value: Any) -> Any:
    """An edit setting `product:<key>.<field>`, `policy:<n>.<field>` or `expiry.<field>` (None deletes)."""
    target, _, name = path.rpartition(".")

    def change(document: dict[str, Any]) -> None:
        if target.startswith("product:"):
            table = _product(document, target.removeprefix("product:"))
        elif target.startswith("policy:"):
            table = document["expiry"]["policy"][int(target.removeprefix("policy:")) - 1]
        elif target in ("expiry", "pulls"):
            table = document.setdefault(target, {})
        else:
            table = document
        if value is None:
            del table[name]
        else:
            table[name] = value

    return change


def _duplicate_product(document: dict[str, Any]) -> None:
    document["product"].append(copy.deepcopy(document["product"][0]) | {"name": "Dashboard again"})


def _duplicate_policy(document: dict[str, Any]) -> None:
    document["expiry"]["policy"].append(
        {"source_type": "Banking", "jurisdiction": "UK", "period_days": 30, "basis": "reconfirmation"}
    )


BAD = [
    # (id, edit, fragments the message must contain besides the file name)
    ("unknown-data-type", _set("product:lending.required", ["balancesheet", "invoices"]),
     ["product 'lending'", "unknown data type 'balancesheet' in required", "did you mean 'balanceSheet'"]),
    ("typo-data-type", _set("product:dashboard.optional", ["customer"]),
     ["product 'dashboard'", "'customer'", "in optional", "did you mean 'customers'"]),
    ("not-a-string-data-type", _set("product:dashboard.required", ["invoices", 42]),
     ["product 'dashboard'", "42"]),
    ("listed-twice", _set("product:dashboard.required", ["invoices", "invoices"]),
     ["product 'dashboard'", "'invoices'", "twice"]),
    ("empty-required", _set("product:bank-feeds.required", []),
     ["product 'bank-feeds'", "required must name at least one data type"]),
    ("duplicate-product", _duplicate_product,
     ["product 'dashboard'", "duplicate product 'dashboard'", "product #1"]),
    ("negative-retention", _set("product:lending.retention_days", -1),
     ["product 'lending'", "retention_days", "got -1"]),
    ("fractional-retention", _set("product:lending.retention_days", 7.5),
     ["product 'lending'", "retention_days", "got 7.5"]),
    ("string-retention", _set("product:lending.retention_days", "30"),
     ["product 'lending'", "retention_days", "got '30'"]),
    ("boolean-retention", _set("product:lending.retention_days", True),
     ["product 'lending'", "retention_days", "got True"]),
    ("missing-name", _set("product:bank-feeds.name", None),
     ["product 'bank-feeds'", "missing required field 'name'"]),
    ("missing-retention", _set("product:dashboard.retention_days", None),
     ["product 'dashboard'", "missing required field 'retention_days'"]),
    ("missing-key", _set("product:lending.key", None),
     ["product #2 (no key)", "missing required field 'key'"]),
    ("bad-key", _set("product:lending.key", "Lending Origination"),
     ["product 'Lending Origination'", "key 'Lending Origination' is not a product key"]),
    ("unknown-field", _set("product:lending.retention", 30),
     ["product 'lending'", "unknown field 'retention'", "did you mean 'retention_days'"]),
    ("required-and-optional", _set("product:dashboard.optional", ["invoices", "customers"]),
     ["product 'dashboard'", "data type 'invoices' is in both required and optional"]),
    ("unknown-source-type", _set("policy:1.source_type", "Bank"),
     ["policy #1 (Bank/uk)", "unknown source type 'Bank'", "did you mean 'Banking'"]),
    ("zero-period", _set("policy:2.period_days", 0),
     ["policy #2 (Banking/eu)", "period_days", "got 0"]),
    ("negative-period", _set("policy:1.period_days", -90),
     ["policy #1 (Banking/uk)", "period_days", "got -90"]),
    ("duplicate-policy", _duplicate_policy,
     ["policy #3 (Banking/uk)", "duplicate policy", "'Banking'", "'uk'", "policy #1"]),
    ("unknown-basis", _set("policy:1.basis", "reconfirm"),
     ["policy #1 (Banking/uk)", "unknown basis 'reconfirm'", "did you mean 'reconfirmation'"]),
    ("missing-policy-field", _set("policy:2.basis", None),
     ["policy #2 (Banking/eu)", "missing required field 'basis'"]),
    ("lead-not-before-expiry", _set("policy:1.period_days", 5),
     ["policy #1 (Banking/uk)", "warning lead of 7 days", "period_days 5"]),
    ("bad-warning-leads", _set("expiry.warning_lead_days", [7, 0]), ["[expiry]", "warning_lead_days", "[7, 0]"]),
    ("bad-stale", _set("expiry.stale_after_days", -60), ["[expiry]", "stale_after_days", "got -60"]),
    ("missing-expiry", _set("expiry", None), ["missing required field 'expiry'"]),
    ("bad-version", _set("version", "one"), ["version", "got 'one'"]),
    ("bad-freshness", _set("pulls.freshness_hours", 0), ["[pulls]", "freshness_hours", "got 0"]),
    ("unknown-pulls-field", _set("pulls.fresh_hours", 4), ["[pulls]", "unknown field 'fresh_hours'"]),
    ("no-products", _set("product", []), ["product", "defines no products"]),
    ("product-not-an-array", _set("product", {"key": "x"}), ["product", "array of tables", "[[product]]"]),
]


@pytest.mark.parametrize(("change", "fragments"), [pytest.param(c, f, id=i) for i, c, f in BAD])
def test_bad_catalogs_are_refused_naming_file_product_and_value(
    tmp_path: Path, change: Any, fragments: list[str]
) -> None:
    path = write(tmp_path, edit(change))
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert len(raised.value.problems) == 1, raised.value.problems


def test_the_base_document_is_valid(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, base_document()))
    assert catalog.version == 3 and list(catalog.products) == ["dashboard", "lending", "bank-feeds"]
    assert catalog.product("bank-feeds").optional == frozenset() and catalog.product("bank-feeds").description == ""


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    def change(document: dict[str, Any]) -> None:
        _set("product:lending.retention_days", -5)(document)
        _set("product:dashboard.required", ["invoice"])(document)
        _set("policy:1.period_days", 0)(document)

    path = write(tmp_path, edit(change))
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    assert len(raised.value.problems) == 3
    assert all(p.startswith(f"{path}: ") for p in raised.value.problems)
    assert str(raised.value).startswith(f"{path}: 3 problems in the catalog")
    for fragment in ("got -5", "'invoice'", "did you mean 'invoices'", "got 0"):
        assert fragment in str(raised.value)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param('version = 1\n[[product]]\nkey = "lending\n', ["malformed TOML", "line 3"], id="unterminated"),
        pytest.param("version = 1\nversion = 2\n", ["malformed TOML", "line 2"], id="duplicate-key"),
        pytest.param("[[product]\n", ["malformed TOML", "line 1"], id="bad-header"),
    ],
)
def test_malformed_toml_names_the_file_and_the_position(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    assert str(raised.value).startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="nowhere.toml: catalog file not found"):
        load_catalog(tmp_path / "nowhere.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"version = 1\n\xff\xfe")
    with pytest.raises(CatalogError, match="binary.toml: not UTF-8"):
        load_catalog(binary)
    with pytest.raises(CatalogError, match="is a directory"):
        load_catalog(tmp_path)


# --- properties -----------------------------------------------------------------------------------------

product_keys = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)


@st.composite
def products(draw: st.DrawFn, key: str) -> dict[str, Any]:
    keys = draw(st.permutations(DATA_TYPES))
    n_required = draw(st.integers(1, 10))
    n_optional = draw(st.integers(0, 10))
    return {
        "key": key,
        "name": draw(st.text(st.characters(exclude_categories=("Cs",)), min_size=1).filter(str.strip)),
        "description": draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=50)),
        "required": keys[:n_required],
        "optional": keys[n_required:n_required + n_optional],
        "retention_days": draw(st.integers(0, 3650)),
    }


@st.composite
def catalogs(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(product_keys, min_size=1, max_size=5, unique=True))
    document = base_document()
    document["product"] = [draw(products(key)) for key in keys]
    return document


@settings(max_examples=60, deadline=None)
@given(document=catalogs())
def test_any_catalog_of_valid_keys_loads(document: dict[str, Any]) -> None:
    catalog = parse_catalog(dump(document), source="generated.toml")
    assert list(catalog.products) == [p["key"] for p in document["product"]]
    for entry in document["product"]:
        product = catalog.product(entry["key"])
        assert product.required == frozenset(entry["required"])
        assert product.optional == frozenset(entry["optional"])
        assert product.data_types == frozenset(entry["required"]) | frozenset(entry["optional"])
        assert product.retention_days == entry["retention_days"]
        assert product.name == entry["name"].strip()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    bad=st.text(st.characters(exclude_categories=("Cs",)), max_size=30).filter(lambda s: s not in DATA_TYPES),
    where=st.sampled_from(["required", "optional"]),
)
def test_any_string_that_is_not_a_data_type_key_is_refused(bad: str, where: str) -> None:
    document = base_document()
    _product(document, "lending")[where] = ["customers", bad] if where == "optional" else ["balanceSheet", bad]
    with pytest.raises(CatalogError) as raised:
        parse_catalog(dump(document), source="generated.toml")
    message = str(raised.value)
    assert message.startswith("generated.toml: product 'lending': ")
    assert f"unknown data type {bad!r} in {where}" in message


@settings(max_examples=40, deadline=None)
@given(days=st.one_of(st.integers(max_value=-1), st.floats(allow_nan=False, allow_infinity=False)))
def test_any_negative_or_fractional_retention_is_refused(days: float) -> None:
    document = base_document()
    _product(document, "dashboard")["retention_days"] = days
    with pytest.raises(CatalogError, match=r"product 'dashboard': retention_days .* got "):
        parse_catalog(dump(document), source="generated.toml")


# --- data types in plain words ------------------------------------------------------------------------------


def test_the_shipped_catalog_says_every_declared_data_type_in_plain_words(shipped: Catalog) -> None:
    assert set(shipped.words) >= shipped.data_types
    words = shipped.describe("balanceSheet")
    assert (words.name, words.description) == (
        "Balance sheets", "your assets, liabilities and equity at the end of each period"
    )
    assert all(w.name and w.description and w.key == k for k, w in shipped.words.items())
    assert shipped.describe("journals").name == "journals"  # no words: the key
    assert shipped.to_dict()["data_types"]["invoices"]["name"] == "Invoices"


def test_a_declared_data_type_without_words_is_named(tmp_path: Path) -> None:
    document = edit(lambda d: [d["data_types"].pop(k) for k in ("balanceSheet", "banking-accounts")])
    with pytest.raises(CatalogError) as raised:
        load_catalog(write(tmp_path, document))
    assert "no name and description for data type 'balanceSheet', 'banking-accounts'" in str(raised.value)
    assert "my-catalog.toml: data_types:" in str(raised.value)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["data_types"].update(invoicez={"name": "x", "description": "y"}),
         "[data_types.invoicez]: unknown data type 'invoicez' (did you mean 'invoices'?)"),
        (lambda d: d["data_types"]["invoices"].pop("description"),
         "[data_types.invoices]: missing required field 'description'"),
        (lambda d: d["data_types"]["invoices"].update(name="  "), "name must be a non-empty string, got '  '"),
        (lambda d: d["data_types"]["invoices"].update(colour="red"), "unknown field 'colour'"),
    ],
)
def test_bad_data_type_words_are_refused_naming_the_key(tmp_path: Path, change: Any, named: str) -> None:
    with pytest.raises(CatalogError) as raised:
        load_catalog(write(tmp_path, edit(change)))
    assert named in str(raised.value)
