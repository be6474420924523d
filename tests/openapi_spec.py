"""Validate bodies against the real Codat Platform spec (the shared `codat-platform-openapi.json`).

The spec says OpenAPI 3.1 but uses the 3.0 keyword `nullable: true`; it is converted first, in place so
that every JSON pointer still resolves: a nullable node's `type` also allows "null" (and its `enum` null),
and a nullable `$ref`/`allOf` moves under `anyOf: [..., {"type": "null"}]`. References anywhere in the
document (`#/paths/...`, nested `definitions`) resolve through `referencing`, with the whole document as
one resource; schemas are checked with Draft 2020-12 and our own checks for formats uuid, date-time, uri
and uri-reference.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(os.environ.get("CODAT_PLATFORM_SPEC", Path(__file__).parent / "data" / "codat-platform-openapi.json"))
SPEC_URI = "urn:codat:platform-openapi"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def convert_nullable(node: Any) -> Any:
    """A copy of `node` with OpenAPI 3.0 `nullable` turned into JSON Schema, keeping every key's path."""
    if isinstance(node, list):
        return [convert_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: convert_nullable(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is not True:
        return out
    if "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"] if "null" not in types else types
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    branch: dict[str, Any] = {}
    for key in ("$ref", "allOf", "oneOf", "anyOf"):
        if key in out:
            branch[key] = out.pop(key)
    if branch:
        out["anyOf"] = [branch, {"type": "null"}]
    return out


def _check_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _UUID.match(value):
        return False
    uuid.UUID(value)
    return True


def _check_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00").replace("t", "T"))
    return True


def _check_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and not any(c.isspace() for c in value)


def _check_uri_reference(value: object) -> bool:
    if not isinstance(value, str):
        return True
    urlsplit(value)
    return not any(c.isspace() for c in value)


def format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checks("uuid", raises=ValueError)(_check_uuid)
    checker.checks("date-time", raises=ValueError)(_check_date_time)
    checker.checks("uri", raises=ValueError)(_check_uri)
    checker.checks("uri-reference", raises=ValueError)(_check_uri_reference)
    return checker


@cache
def spec() -> dict[str, Any]:
    """The converted spec document."""
    return convert_nullable(json.loads(SPEC_PATH.read_text(encoding="utf-8")))


@cache
def _registry() -> Registry:
    resource = Resource.from_contents(spec(), default_specification=DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _operation(method: str, path_template: str) -> tuple[dict[str, Any], str]:
    paths = spec()["paths"]
    if path_template not in paths:
        raise AssertionError(f"the spec has no path {path_template!r}")
    item = paths[path_template]
    op = item.get(method.lower())
    if op is None:
        declared = ", ".join(m.upper() for m in _METHODS if m in item)
        raise AssertionError(f"the spec has no {method.upper()} {path_template} (declared: {declared})")
    return op, f"#/paths/{_escape(path_template)}/{method.lower()}"


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a `$ref` at the top of a responses/requestBody entry (they point into components)."""
    seen = 0
    while "$ref" in node:
        resolved = _registry().resolver(base_uri=SPEC_URI).lookup(node["$ref"])
        node = resolved.contents
        seen += 1
        if seen > 20:
            raise AssertionError("reference cycle")
    return node


def response_schema_for(
    method: str, path_template: str, status_code: int | str, *, allow_undeclared_error: bool = False
) -> dict[str, Any] | None:
    """A schema (a `$ref` into the spec) for the JSON body of that response, or None for no body.

    A status the operation does not declare is an AssertionError, unless `allow_undeclared_error` and it
    is an error status: then Codat's `ErrorMessage` applies.
    """
    op, pointer = _operation(method, path_template)
    responses = op.get("responses", {})
    code = str(status_code)
    key = next((k for k in (code, f"{code[0]}XX", f"{code[0]}xx", "default") if k in responses), None)
    if key is None:
        if allow_undeclared_error and int(status_code) >= 400:
            return {"$ref": f"{SPEC_URI}#/components/schemas/ErrorMessage"}
        raise AssertionError(
            f"{method.upper()} {path_template} does not declare status {code} "
            f"(declared: {', '.join(responses)})"
        )
    response = _deref(responses[key])
    content = response.get("content") or {}
    if not content:
        return None
    media = "application/json" if "application/json" in content else next(iter(content))
    if "schema" not in content[media]:
        return None
    ref = f"{pointer}/responses/{_escape(key)}"
    if "$ref" in responses[key]:
        ref = responses[key]["$ref"]
    return {"$ref": f"{SPEC_URI}{ref}/content/{_escape(media)}/schema"}


def request_schema_for(method: str, path_template: str) -> dict[str, Any]:
    op, pointer = _operation(method, path_template)
    body = op.get("requestBody")
    if body is None:
        raise AssertionError(f"{method.upper()} {path_template} declares no request body")
    ref = f"{pointer}/requestBody"
    if "$ref" in body:
        ref = body["$ref"]
        body = _deref(body)
    content = body.get("content") or {}
    media = "application/json" if "application/json" in content else next(iter(content))
    return {"$ref": f"{SPEC_URI}{ref}/content/{_escape(media)}/schema"}


def schema_ref(name: str) -> dict[str, Any]:
    """A schema pointing at `#/components/schemas/{name}`."""
    if name not in spec()["components"]["schemas"]:
        raise AssertionError(f"the spec has no schema {name!r}")
    return {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}


def _where(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@cache
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(
        json.loads(schema_json), registry=_registry(), format_checker=format_checker()
    )


def validate(schema: dict[str, Any], instance: Any, *, what: str = "body") -> None:
    """AssertionError listing (up to 12) places where `instance` breaks `schema`."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(
        validator.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    if not errors:
        return
    lines = []
    for error in errors[:12]:
        message = error.message if len(error.message) < 300 else error.message[:300] + "..."
        detail = ""
        if error.context:
            best = max(error.context, key=lambda e: len(e.absolute_path))
            detail = f" (e.g. {_where(best.absolute_path)}: {best.message[:200]})"
        lines.append(f"  {_where(error.absolute_path)}: {message}{detail}")
    more = f"\n  ... and {len(errors) - 12} more" if len(errors) > 12 else ""
    raise AssertionError(f"{what} does not match the spec:\n" + "\n".join(lines) + more)


def validate_response(
    method: str, path_template: str, status_code: int, body: Any, *, allow_undeclared_error: bool = False
) -> None:
    """Check a response body (parsed JSON, or None/"" for no body) against the spec."""
    schema = response_schema_for(
        method, path_template, status_code, allow_undeclared_error=allow_undeclared_error
    )
    what = f"{method.upper()} {path_template} -> {status_code} body"
    if schema is None:
        if body not in (None, "", b""):
            raise AssertionError(f"{what}: the spec declares no body, got {str(body)[:200]!r}")
        return
    validate(schema, body, what=what)


def validate_request_body(method: str, path_template: str, body: Any) -> None:
    validate(
        request_schema_for(method, path_template), body, what=f"{method.upper()} {path_template} request body"
    )
