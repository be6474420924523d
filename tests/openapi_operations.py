"""The operations of Codat's OpenAPI document (tests/openapi_spec.py) as standalone schemas, for generating
requests: every `$ref` inlined (Codat's `DateTime`, ISO 8601 said in prose, marked as format date-time),
`allOf` merged, and what a list operation pages through."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote

from tests.openapi_spec import spec

_SKIP_KEYS = frozenset({"description", "example", "examples", "title", "x-internal", "definitions"})
DATE_TIME_REF = "#/components/schemas/DateTime"


@dataclass(frozen=True)
class Operation:
    """One operation of the spec: `GET /companies/{companyId}`."""

    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def spec(self) -> dict[str, Any]:
        return spec()["paths"][self.path][self.method.lower()]


def resolve(ref: str) -> Any:
    """The node at a local reference `#/a/b~1c` (tokens may be percent-encoded, as the spec's are)."""
    if not ref.startswith("#/"):
        raise AssertionError(f"not a local reference: {ref!r}")
    node: Any = spec()
    for token in ref[2:].split("/"):
        token = unquote(token).replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def inline(node: Any, refs: int = 0) -> Any:
    """`node` with every `$ref` replaced by what it points at and documentation keys dropped: a schema
    that stands alone. Past 16 references deep (only a recursive schema goes that far) a schema becomes
    `{}`, anything."""
    if isinstance(node, list):
        return [inline(item, refs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        if refs >= 16:
            return {}
        target = inline(resolve(node["$ref"]), refs + 1)
        if node["$ref"] == DATE_TIME_REF:  # Codat's dates: ISO 8601 strings, said in prose, not a format
            target = {**target, "format": "date-time"}
        rest = inline({k: v for k, v in node.items() if k != "$ref"}, refs)
        return {**target, **rest} if isinstance(target, dict) else target
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {name: inline(schema, refs) for name, schema in value.items()}
        elif key not in _SKIP_KEYS:
            out[key] = inline(value, refs)
    return out


def flat(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` with its `allOf` merged in and a nullable `anyOf: [X, null]` taken as X (for reading the
    type, format, enum and properties of a schema, not for validating)."""
    out = {k: v for k, v in schema.items() if k not in ("allOf", "anyOf")}
    for part in schema.get("allOf", ()):
        part = flat(part)
        out["properties"] = {**out.get("properties", {}), **part.pop("properties", {})}
        out = {**part, **out}
    branches = [b for b in schema.get("anyOf", ()) if b.get("type") != "null"]
    if len(branches) == 1:
        out = {**flat(branches[0]), **out}
    return out


def parameters(operation: Operation) -> list[dict[str, Any]]:
    item = spec()["paths"][operation.path]
    return [inline(p) for p in [*item.get("parameters", ()), *operation.spec.get("parameters", ())]]


def body_schema(operation: Operation) -> dict[str, Any] | None:
    body = operation.spec.get("requestBody")
    if body is None:
        return None
    content = inline(body).get("content", {})
    return content.get("application/json", {}).get("schema")


@cache
def listed_properties(operation: Operation) -> dict[str, dict[str, Any]]:
    """The properties of what a list operation pages through (`results` items of its 200 body); {} for an
    operation that lists nothing."""
    ok = operation.spec.get("responses", {}).get("200", {})
    schema = inline(ok).get("content", {}).get("application/json", {}).get("schema")
    if not schema:
        return {}
    results = flat(schema).get("properties", {}).get("results")
    if not results:
        return {}
    return {
        name: flat(prop) for name, prop in flat(flat(results).get("items", {})).get("properties", {}).items()
    }


@cache
def example_tag_keys() -> list[str]:
    """Tag keys in the spec's own example of the `tags` filter (`region=uk && team=invoice-finance`)."""
    listed = Operation("GET", "/companies").spec.get("parameters", ())
    example = next((p.get("example", "") for p in listed if p.get("name") == "tags"), "")
    return re.findall(r"([A-Za-z][\w-]*)\s*(?:!=|=|~)", example) or ["region"]
