"""Codat's query language, compiled to a SQL WHERE clause with bound parameters only.

Grammar (https://docs.codat.io/using-the-api/querying)::

    expr   := term ('||' term)*
    term   := factor ('&&' factor)*
    factor := '{' expr '}' | clause
    clause := field op value          op: = != ~ > < >= <=

A value runs to the next `&&`, `||`, closing `}` or the end, trimmed; surrounding quotes are dropped. Braces
nest at most MAX_NESTING deep.
Fields are whitelisted per resource; each names a SQL expression and a kind (string, uuid, enum, time, int,
bool) that decides the operators allowed and how the value is converted. Field names and values never
reach the SQL text.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from codat_sandbox.clock import parse_iso, stamp

MAX_QUERY_LENGTH = 2048
MAX_NESTING = 32  # braces deeper than this are refused, before the recursive parser runs out of stack
ALL_OPERATORS: tuple[str, ...] = ("!=", ">=", "<=", "=", "~", ">", "<")  # longest first
TAG_OPERATORS: tuple[str, ...] = ("!=", "=", "~")
_OPERATOR_CHARS = set("=!~<>")
_STOP_CHARS = _OPERATOR_CHARS | set("&|{}")

_KIND_OPERATORS = {
    "string": {"=", "!=", "~"},
    "uuid": {"=", "!="},
    "enum": {"=", "!="},
    "bool": {"=", "!="},
    "time": {"=", "!=", ">", "<", ">=", "<="},
    "int": {"=", "!=", ">", "<", ">=", "<="},
}


@dataclass(frozen=True)
class Field:
    """A queryable property: SQL expression (may hold `?` bound to `params`) and its kind."""

    sql: str
    kind: str = "string"
    params: tuple = ()
    enum: tuple[str, ...] = ()
    orderable: bool = True


class QueryError(ValueError):
    """A query (or orderBy, or tags filter) that cannot be compiled; `field` names the culprit if known."""

    def __init__(self, message: str, *, parameter: str = "query", field: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.field = field


Resolver = Callable[[str], Field | None]


def _resolver(fields: Mapping[str, Field] | Resolver) -> Resolver:
    if callable(fields):
        return fields
    return fields.get


class _Parser:
    def __init__(
        self, text: str, resolve: Resolver, resource: str, operators: tuple[str, ...], parameter: str
    ) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.resolve = resolve
        self.resource = resource
        self.operators = operators
        self.parameter = parameter

    def fail(self, message: str, field: str | None = None) -> QueryError:
        return QueryError(
            f"Error parsing {self.parameter} - {message}", parameter=self.parameter, field=field
        )

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def parse(self) -> tuple[str, list]:
        sql, params = self.expr()
        self.skip_ws()
        if self.pos != len(self.text):
            raise self.fail(f"Malformed query: unexpected {self.text[self.pos :]!r} at position {self.pos}.")
        return sql, params

    def expr(self) -> tuple[str, list]:
        parts = [self.term()]
        while True:
            self.skip_ws()
            if not self.at("||"):
                break
            self.pos += 2
            parts.append(self.term())
        if len(parts) == 1:
            return parts[0]
        return "(" + " OR ".join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]

    def term(self) -> tuple[str, list]:
        parts = [self.factor()]
        while True:
            self.skip_ws()
            if not self.at("&&"):
                break
            self.pos += 2
            parts.append(self.factor())
        if len(parts) == 1:
            return parts[0]
        return "(" + " AND ".join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]

    def factor(self) -> tuple[str, list]:
        self.skip_ws()
        if self.at("{"):
            if self.depth >= MAX_NESTING:
                raise self.fail(
                    f"Malformed query: braces nested deeper than {MAX_NESTING} at position {self.pos}."
                )
            self.pos += 1
            self.depth += 1
            inner = self.expr()
            self.skip_ws()
            if not self.at("}"):
                raise self.fail(f"Malformed query: expected '}}' at position {self.pos}.")
            self.pos += 1
            self.depth -= 1
            return "(" + inner[0] + ")", inner[1]
        return self.clause()

    def clause(self) -> tuple[str, list]:
        self.skip_ws()
        start = self.pos
        while (
            self.pos < len(self.text)
            and not self.text[self.pos].isspace()
            and self.text[self.pos] not in _STOP_CHARS
        ):
            self.pos += 1
        name = self.text[start : self.pos]
        if not name:
            raise self.fail(f"Malformed query: expected a property name at position {start}.")
        self.skip_ws()
        op = next((o for o in ALL_OPERATORS if self.at(o)), None)
        if op is None:
            raise self.fail(f"Malformed query: expected an operator after {name!r}.", field=name)
        if op not in self.operators:
            raise self.fail(
                f"Operator {op!r} is not supported here (use one of {', '.join(self.operators)}).", field=name
            )
        self.pos += len(op)
        value = self.read_value()
        field = self.resolve(name)
        if field is None:
            raise self.fail(f"Could not resolve property {name} on {self.resource}", field=name)
        return compile_clause(name, field, op, value, fail=self.fail)

    def read_value(self) -> str:
        start = self.pos
        while self.pos < len(self.text):
            if self.at("&&") or self.at("||") or (self.depth > 0 and self.at("}")):
                break
            self.pos += 1
        value = self.text[start : self.pos].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            return value[1:-1]
        if not value:
            raise self.fail(f"Malformed query: missing value at position {start}.")
        return value


def compile_clause(
    name: str, field: Field, op: str, value: str, *, fail: Callable[..., QueryError]
) -> tuple[str, list]:
    allowed = _KIND_OPERATORS[field.kind]
    if op not in allowed:
        raise fail(
            f"Operator {op!r} cannot be used on property {name} (use one of {', '.join(sorted(allowed))}).",
            field=name,
        )
    expr = field.sql
    bound: object
    collate = ""
    if field.kind == "string":
        bound = value
        collate = " COLLATE NOCASE"
    elif field.kind == "uuid":
        try:
            bound = str(uuid.UUID(value))
        except ValueError:
            raise fail(f"Value {value!r} for property {name} is not a uuid.", field=name) from None
    elif field.kind == "enum":
        match = next((e for e in field.enum if e.lower() == value.lower()), None)
        if match is None:
            raise fail(
                f"Value {value!r} for property {name} is not one of {', '.join(field.enum)}.", field=name
            )
        bound = match
    elif field.kind == "bool":
        if value.lower() not in ("true", "false"):
            raise fail(f"Value {value!r} for property {name} is not true or false.", field=name)
        bound = 1 if value.lower() == "true" else 0
    elif field.kind == "time":
        try:
            bound = stamp(parse_iso(value))
        except ValueError:
            raise fail(
                f"Value {value!r} for property {name} is not an ISO 8601 date or time.", field=name
            ) from None
    elif field.kind == "int":
        try:
            bound = int(value)
        except ValueError:
            raise fail(f"Value {value!r} for property {name} is not an integer.", field=name) from None
    else:  # pragma: no cover - a programming error in a field table
        raise AssertionError(f"unknown field kind {field.kind!r}")
    fp = list(field.params)
    if op == "~":
        return f"instr(lower({expr}), lower(?)) > 0", [*fp, bound]
    if op == "!=":
        return f"({expr} IS NULL OR {expr} != ?{collate})", [*fp, *fp, bound]
    return f"{expr} {op} ?{collate}", [*fp, bound]


def compile_query(
    text: str | None,
    fields: Mapping[str, Field] | Resolver,
    *,
    resource: str,
    operators: tuple[str, ...] = ALL_OPERATORS,
    parameter: str = "query",
) -> tuple[str, list]:
    """`(sql, params)` for `text`; `("1=1", [])` for an empty query. QueryError names what is wrong."""
    if text is None or not text.strip():
        return "1=1", []
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(
            f"Error parsing {parameter} - longer than {MAX_QUERY_LENGTH} characters.", parameter=parameter
        )
    return _Parser(text, _resolver(fields), resource, operators, parameter).parse()


def compile_order_by(
    text: str | None, fields: Mapping[str, Field] | Resolver, *, resource: str
) -> tuple[str, list] | None:
    """`(sql, params)` for an ORDER BY term, e.g. `-created` -> `created DESC`; None if not given."""
    if text is None or not text.strip():
        return None
    name = text.strip()
    descending = name.startswith("-")
    if descending:
        name = name[1:].strip()
    field = _resolver(fields)(name)
    if field is None or not field.orderable:
        raise QueryError(
            f"Error parsing orderBy - Could not order {resource} by property {name!r}.",
            parameter="orderBy",
            field=name,
        )
    return f"{field.sql} {'DESC' if descending else 'ASC'}", list(field.params)


def tag_resolver(column: str) -> Resolver:
    """Fields of the `tags` filter: any tag key, read from the JSON object in `column`. A key that cannot be
    put in a quoted JSON path (`"`, `\\`, or NUL, where SQLite's path ends) resolves to nothing."""

    def resolve(key: str) -> Field | None:
        if not key or len(key) > 27 or any(c in key for c in '"\\\x00'):
            return None
        return Field(sql=f"json_extract({column}, ?)", kind="string", params=(f'$."{key}"',))

    return resolve
