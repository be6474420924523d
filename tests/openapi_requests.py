"""Hypothesis strategies for requests to Codat's Platform API, built from its OpenAPI document
(tests/openapi_operations.py).

Each parameter and body comes from its schema in the spec (`from_schema`, for the keywords the spec's
request schemas use), widened with values of the wrong type and shape. `query`, `orderBy` and `tags` also
get Codat's query language: clauses built from the properties of the resource the operation lists (a
date-time property gets dates, a uuid one uuids, an enum its values), joined with `&&`, `||` and braces,
with empty clauses, stray tokens, unknown fields and operators, keys awkward for a JSON path, deep nesting
and lengths around the 2048-character limit; plain random text alone would not get past the first clause.
Dates span the whole datetime range with UTC offsets, its very ends included, and broken ones; strings may
hold a lone surrogate. Path ids are drawn mostly from `pools` (ids that exist), so a request gets past
"company not found" to its parameters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from tests.openapi_operations import (
    Operation,
    body_schema,
    example_tag_keys,
    flat,
    listed_properties,
    parameters,
)

JSONish = Any
OPERATORS = ("=", "!=", "~", ">", "<", ">=", "<=")
ODD_OPERATORS = ("==", "=>", "=<", "<>", "!", "~=", "&", "|", "")
TOKENS = ("&&", "||", "{", "}", "{}", "", " ", "=", "!", "&", "|", "'", '"', "-", ".")
MAX_QUERY_LENGTH = 2048  # Codat's documented limit on a query string, probed on both sides


@dataclass(frozen=True)
class Request:
    """A drawn request: the operation it is for, its URL path, query parameters and raw body."""

    operation: Operation
    url: str
    params: tuple[tuple[str, str], ...] = ()
    content: bytes | None = None

    def __repr__(self) -> str:
        body = "" if self.content is None else f" body={self.content[:300]!r}"
        return f"{self.operation.method} {self.url} params={list(self.params)!r}{body}"


# -- values ------------------------------------------------------------------------------------------------

TEXT = st.text(max_size=24)  # Hypothesis's default alphabet: control characters and NUL included
#: text with a lone surrogate in it (two side by side could pair up into one valid character)
TEXT_WITH_SURROGATE = st.builds(
    "{}{}{}".format, st.text(max_size=6), st.characters(categories=["Cs"]), st.text(max_size=6)
)
JUNK = st.one_of(
    TEXT,
    st.integers().map(str),
    st.floats().map(str),
    st.sampled_from(["", " ", "null", "true", "-1", "0", "1e3", "0x10", "1_000", "\uff11", "%00", "'", '"']),
)
_OFFSETS = st.one_of(
    st.none(), st.just(UTC), st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))
)
_DATETIMES = st.datetimes(min_value=datetime.min, max_value=datetime.max, timezones=_OFFSETS)
#: local times at either end of the range whose UTC time lies outside it (an offset carries them past)
_EDGE_DATETIMES = st.one_of(
    st.builds(
        lambda late, ahead: (datetime.min + timedelta(minutes=late)).replace(
            tzinfo=timezone(timedelta(minutes=ahead))
        ),
        st.integers(0, 719),
        st.integers(720, 1439),
    ),
    st.builds(
        lambda early, behind: (datetime.max - timedelta(minutes=early)).replace(
            tzinfo=timezone(-timedelta(minutes=behind))
        ),
        st.integers(0, 719),
        st.integers(720, 1439),
    ),
)
_DATE_STYLES = ("iso", "seconds", "z", "date", "space", "minutes")


def _format_date(value: datetime, style: str) -> str:
    if style == "date":
        return value.date().isoformat()
    if style == "space":
        return value.isoformat(sep=" ")
    if style in ("seconds", "minutes"):
        return value.isoformat(timespec=style)
    text = value.isoformat()
    return text.replace("+00:00", "Z") if style == "z" else text


BAD_DATES = st.one_of(
    st.sampled_from(
        [
            "2026-13-01",
            "2026-02-30",
            "2026-01-01T24:00:00",
            "2026-01-01T00:00:00+24:00",
            "0000-01-01",
            "10000-01-01",
            "+002026-01-01",
            "2026/01/01",
            "01-01-2026",
            "yesterday",
            "2026-01-01T00:00:00ZZ",
            "T",
            "",
        ]
    ),
    TEXT,
)
#: Codat's dates: any ISO 8601 form (date only, local, Z, offsets) across the whole datetime range, and at
#: its very ends with offsets
ISO_DATES = st.one_of(
    st.builds(_format_date, _DATETIMES, st.sampled_from(_DATE_STYLES)),
    st.builds(_format_date, _EDGE_DATETIMES, st.sampled_from([s for s in _DATE_STYLES if s != "date"])),
)
DATES = st.one_of(ISO_DATES, BAD_DATES)
FORMATS = {"uuid": st.uuids().map(str), "date-time": ISO_DATES}
#: keys awkward for a JSON path or SQL: what a tag key or dotted property name may be asked for
AWKWARD_KEYS = (
    "",
    "\x00",
    "a\x00b",
    '"',
    'a"b',
    "\\",
    "'",
    "$",
    "$.a",
    "[0]",
    "a[",
    ".",
    "..",
    "*",
    "é",
    "x" * 28,
)

JSON_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT_WITH_SURROGATE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def from_schema(schema: Mapping[str, Any]) -> st.SearchStrategy[JSONish]:
    """Values valid by an inlined `schema`, for the keywords the spec's parameters and request bodies use:
    type (null too), enum, allOf, a nullable anyOf, format uuid and date-time, pattern, lengths, minimum and
    maximum, items, properties and required, additionalProperties and maxProperties."""
    nullable = any(branch.get("type") == "null" for branch in schema.get("anyOf", ()))
    schema = flat(schema)
    types = schema.get("type") or []
    types = types if isinstance(types, list) else [types]
    if nullable or "null" in types:
        return st.none() | from_schema({**schema, "type": [t for t in types if t != "null"]})
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = types[0] if types else "object" if "properties" in schema else None
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        size = min(schema.get("maxItems", 4), 4)
        return st.lists(
            from_schema(schema.get("items", {})), min_size=min(schema.get("minItems", 0), size), max_size=size
        )
    if kind == "object":
        return _object(schema)
    return JSON_ANY


def _string(schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
    if schema.get("format") in FORMATS:
        return FORMATS[schema["format"]]
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if "pattern" not in schema:
        text = st.text(min_size=low, max_size=high if high is not None else 24)
        # JSON can carry a lone surrogate (`"\ud800"`); a server must refuse it, not choke on it
        odd = TEXT_WITH_SURROGATE.filter(lambda t: low <= len(t) <= (high if high is not None else len(t)))
        return st.one_of(text, text, text, odd)
    return st.from_regex(schema["pattern"], fullmatch=True).filter(
        lambda text: low <= len(text) <= (high if high is not None else len(text))
    )


def _object(schema: Mapping[str, Any]) -> st.SearchStrategy[dict[str, JSONish]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fixed = st.fixed_dictionaries(
        {name: from_schema(properties[name]) for name in sorted(required & set(properties))},
        optional={name: from_schema(sub) for name, sub in sorted(properties.items()) if name not in required},
    )
    extra = schema.get("additionalProperties")
    if not isinstance(extra, dict):
        return fixed
    names = _string({**schema.get("propertyNames", {}), "type": "string"})
    free = st.dictionaries(names, from_schema(extra), max_size=min(schema.get("maxProperties", 4), 4))
    return st.builds(lambda known, more: {**more, **known}, fixed, free)


def value_strategy(schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
    """Query values for a property of `schema`: what it holds, in Codat's text form, or junk."""
    types = schema.get("type") or []
    types = types if isinstance(types, list) else [types]
    if schema.get("format") == "date-time":
        base = DATES
    elif schema.get("format") == "uuid":
        base = st.uuids().map(str)
    elif schema.get("enum"):
        base = st.sampled_from([str(v) for v in schema["enum"] if v is not None])
    elif "boolean" in types:
        base = st.sampled_from(["true", "false", "True"])
    elif "integer" in types or "number" in types:
        base = st.integers().map(str)
    else:
        base = TEXT
    quoted = base.map(lambda v: f'"{v}"') | base.map(lambda v: f"'{v}'")
    return st.one_of(base, base, quoted, JUNK)


# -- Codat's query language --------------------------------------------------------------------------------


def _clause(name: str, space: str, op: str, value: str) -> str:
    return f"{name}{space}{op}{space}{value}"


def field_names(fields: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> st.SearchStrategy[str]:
    """Names a query or orderBy may give: the fields, `object.key` for the fields that are objects of
    free keys (company `tags`), names of no field, and any text."""
    dotted = [n for n, s in fields.items() if "object" in str(s.get("type")) or "additionalProperties" in s]
    names: list[st.SearchStrategy[str]] = []
    if fields:
        names.append(st.sampled_from(sorted(fields)))
    if dotted:
        key = st.sampled_from(keys) | st.sampled_from(AWKWARD_KEYS) | TEXT
        names.append(st.builds("{}.{}".format, st.sampled_from(dotted), key))
    names += [st.sampled_from(["isCompleted", "modifiedDate", "colour", "tags", "tags.", "."]), TEXT]
    return st.one_of(names)


def _kind(schema: Mapping[str, Any]) -> str:
    if schema.get("format") in ("date-time", "uuid"):
        return schema["format"]
    if schema.get("enum"):
        return "enum"
    types = schema.get("type") or ["any"]
    return str(types if isinstance(types, str) else types[0])


def clauses(fields: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> st.SearchStrategy[str]:
    """`field op value`: a kind of field first (dates, uuids, enums, strings...), then one of its fields
    with a value for it, so a resource's few date fields get as many clauses as its many strings."""
    operators = st.one_of(
        st.sampled_from(OPERATORS), st.sampled_from(OPERATORS), st.sampled_from(ODD_OPERATORS)
    )
    spaces = st.sampled_from(["", " ", "  ", "\t"])
    by_kind: dict[str, list[st.SearchStrategy[str]]] = {}
    for name, schema in sorted(fields.items()):
        clause = st.builds(_clause, st.just(name), spaces, operators, value_strategy(schema))
        by_kind.setdefault(_kind(schema), []).append(clause)
    loose = st.builds(_clause, field_names(fields, keys), spaces, operators, value_strategy({}))
    return st.one_of([*(st.one_of(group) for _, group in sorted(by_kind.items())), loose])


def query_strategy(
    fields: Mapping[str, Mapping[str, Any]], keys: Sequence[str] = ()
) -> st.SearchStrategy[str]:
    """Codat query strings over `fields`: well-formed and broken, shallow and deep, short and long."""
    clause = clauses(fields, keys)
    joined = st.recursive(
        clause,
        lambda inner: st.one_of(
            st.builds("{} && {}".format, inner, inner),
            st.builds("{}||{}".format, inner, inner),
            inner.map("{{{}}}".format),
        ),
        max_leaves=5,
    )
    with_tokens = st.lists(joined | st.sampled_from(TOKENS), min_size=1, max_size=5).map("".join)
    nested = st.builds(
        lambda depth, inner, closed: "{" * depth + inner + ("}" * depth if closed else ""),
        st.integers(1, MAX_QUERY_LENGTH // 2),
        clause,
        st.booleans(),
    )
    long = st.builds(
        lambda name, size: f"{name}={'x' * size}",
        field_names(fields, keys),
        st.integers(MAX_QUERY_LENGTH - 16, MAX_QUERY_LENGTH + 16),
    )
    return st.one_of(clause, joined, with_tokens, nested, long, TEXT)


def order_by_strategy(
    fields: Mapping[str, Mapping[str, Any]], keys: Sequence[str] = ()
) -> st.SearchStrategy[str]:
    prefix = st.sampled_from(["", "-", "-", " -", "- ", "+", "--"])
    return st.builds("{}{}".format, prefix, field_names(fields, keys)) | TEXT


# -- requests ----------------------------------------------------------------------------------------------


def _param_text(value: JSONish) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


LANGUAGES = ("query", "orderBy", "tags")  # the parameters that take Codat's query language (or a field name)


def parameter_values(operation: Operation, param: Mapping[str, Any]) -> st.SearchStrategy[str]:
    """Text for one parameter: its language where it has one, else by its schema; and junk."""
    name = param["name"]
    fields = listed_properties(operation)
    keys = example_tag_keys()
    if name == "query":
        return query_strategy(fields, keys)
    if name == "orderBy":
        return order_by_strategy(fields, keys)
    if name == "tags":
        awkward = {key: {"type": "string"} for key in AWKWARD_KEYS}
        return query_strategy({key: {"type": "string"} for key in keys}, keys) | query_strategy(awkward)
    return from_schema(param.get("schema", {})).map(_param_text) | JUNK


def parameter_strategy(
    operation: Operation, param: Mapping[str, Any], pools: Mapping[str, Sequence[str]]
) -> st.SearchStrategy[str | None]:
    """`parameter_values`, mostly ids that exist where `pools` has some (to get past a 404), and None
    (left out) for an optional parameter."""
    values = parameter_values(operation, param)
    if pools.get(param["name"]):
        existing = st.sampled_from(list(pools[param["name"]]))
        values = st.one_of(existing, existing, existing, values)
    return values if param.get("required") else st.none() | values


def _encode(body: JSONish) -> bytes:
    return json.dumps(body).encode()  # ASCII: a lone surrogate goes as its \ud800 escape, as JSON allows


def body_strategy(schema: Mapping[str, Any]) -> st.SearchStrategy[JSONish | bytes]:
    """A JSON body by the schema, the same with one property replaced by anything, any JSON object of the
    schema's property names, or raw bytes (not JSON, empty, nested past any parser's depth)."""
    valid = from_schema(schema)
    names = sorted(flat(schema).get("properties", {})) or ["name"]
    name = st.sampled_from(names) | TEXT
    swapped = st.builds(
        lambda body, key, value: {**body, key: value} if isinstance(body, dict) else body,
        valid,
        name,
        JSON_ANY,
    )
    loose = st.dictionaries(name, JSON_ANY, max_size=4)
    raw = st.one_of(
        st.binary(max_size=24),
        st.just(b""),
        st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(1, 5000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    )
    return st.one_of(valid, valid, swapped, swapped, loose, JSON_ANY, raw)


def requests(
    operation: Operation, pools: Mapping[str, Sequence[str]], focus: str | None = None
) -> st.SearchStrategy[Request]:
    """Requests for `operation`: every parameter drawn (optional ones maybe left out) and its body. With
    a `focus`, path ids that exist and one thing drawn, so that every example goes to it: a parameter of
    LANGUAGES, always given, or "body", a body by its schema (strings and dates at their most awkward).

    A body property named like a path parameter (`companyId` of set-sync-settings) takes that parameter's
    value (half the time, or always with the body in focus), as a real client sends it, so the rest of the
    body is looked at."""
    if focus is None:
        drawn = [(param, parameter_strategy(operation, param, pools)) for param in parameters(operation)]
    else:
        drawn = [
            (param, st.sampled_from(list(pools[param["name"]])))
            if param["in"] == "path" and pools.get(param["name"])
            else (param, parameter_values(operation, param))
            for param in parameters(operation)
            if param["in"] == "path" or param["name"] == focus
        ]
    schema = body_schema(operation)
    bodies = None
    if schema is not None and focus in (None, "body"):
        bodies = body_strategy(schema) if focus is None else from_schema(schema)
    same_ids = st.just(True) if focus == "body" else st.booleans()

    @st.composite
    def draw_request(draw: st.DrawFn) -> Request:
        path_values: dict[str, str] = {}
        params: list[tuple[str, str]] = []
        for param, values in drawn:
            value = draw(values, label=param["name"])
            if value is None:
                continue
            if param["in"] == "path":
                path_values[param["name"]] = value
            elif param["in"] == "query":
                params.append((param["name"], value))
        # a lone surrogate in a free-text path parameter (productIdentifier) goes as its UTF-8 bytes
        quoted = {k: quote(v, safe="", errors="surrogatepass") for k, v in path_values.items()}
        url = operation.path.format(**quoted)
        content = None
        if bodies is not None:
            body = draw(bodies, label="body")
            if isinstance(body, dict) and draw(same_ids):
                body.update({k: v for k, v in path_values.items() if k in body})
            content = body if isinstance(body, bytes) else _encode(body)
        return Request(operation, url, tuple(params), content)

    return draw_request()
