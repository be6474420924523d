"""`Ledger.grant_many`: many grants checked and written set-wise, with the checks, events, current state and
refusals of `Ledger.grant` called once per grant in input order (the refusals worded in `refusals`).

Each chunk is one transaction that first locks its companies, in one sorted order so two writers cannot
deadlock, then checks the chunk against what it finds under those locks: a frame per chunk, joins where
`grant` reads row by row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import Engine, bindparam, delete, insert, select, update

from consent_lifecycle.batching import batched
from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import as_utc
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.db.bulk import CHUNK, select_frame
from consent_lifecycle.db.engine import lock_company
from consent_lifecycle.db.models import (
    Company,
    Connection,
    Consent,
    ConsentConnection,
    ConsentDataType,
    ConsentEvent,
)
from consent_lifecycle.ledger import refusals
from consent_lifecycle.ledger.errors import ConsentError
from consent_lifecycle.ledger.refusals import aware
from consent_lifecycle.ledger.scope import check_channel, product_of, resolve_grant

#: grants per transaction in `Ledger.grant_many`
GRANT_CHUNK = 1000
_GRANT_REQUIRED = frozenset({"company_id", "product", "wording_version", "actor", "channel", "at"})
_GRANT_KEYS = _GRANT_REQUIRED | {"recorded_at", "connections", "data_types"}


class BulkGrants:
    """`Ledger`'s bulk grant (it supplies `engine` and `catalog`)."""

    engine: Engine
    catalog: Catalog

    def grant_many(
        self,
        grants: Sequence[Mapping[str, Any]],
        *,
        skip_refused: bool = False,
        chunk_size: int = GRANT_CHUNK,
    ) -> list[tuple[int, str]]:
        """Record many grants: the same checks, events and current state as calling `grant` for each in
        input order, one transaction per chunk of `chunk_size` grants, checks done set-wise per chunk.

        Each grant is a mapping with `grant`'s arguments: company_id, product, wording_version, actor,
        channel, at, and optionally recorded_at, connections, data_types.

        By default any refused grant (what `grant` would refuse, including a second grant of the same
        company and product) raises ConsentError naming it, and nothing is written: every grant is checked
        before the first chunk is written (and again under the companies' locks; a conflicting write that
        commits in between can still refuse a later chunk, after earlier ones committed). With
        `skip_refused`, refused grants are left out and the rest are recorded. Returns the refused grants
        as (index in `grants`, reason), in input order.
        """
        if chunk_size < 1:
            raise ConsentError(f"chunk_size must be at least 1, got {chunk_size}")
        frame = _grant_frame(self.catalog, grants)
        if not skip_refused and not frame.empty:
            with self.engine.connect() as db:
                _raise_first(_plan_grants(db, self.catalog, frame))
        refused: list[tuple[int, str]] = []
        for start in range(0, len(frame), chunk_size):
            chunk = frame.iloc[start : start + chunk_size]
            with self.engine.begin() as db:
                for company_id in sorted(set(chunk["company_id"])):  # one order: no deadlock between writers
                    lock_company(db, company_id)
                planned = _plan_grants(db, self.catalog, chunk)
                if not skip_refused:
                    _raise_first(planned)
                refused += [(int(i), e) for i, e in planned.loc[planned["error"].notna(), ["index", "error"]].values]
                _write_grants(db, planned[planned["error"].isna()])
        return refused


def _grant_frame(catalog: Catalog, grants: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The grants as a frame (one row each, input order, `index` their position), with the checks that
    need no database done: `error` holds the first refusal `grant` would raise before reading anything."""
    rows = []
    for index, grant in enumerate(grants):
        if not isinstance(grant, Mapping):
            raise ConsentError(f"grant #{index}: expected a mapping of grant arguments, got {type(grant).__name__}")
        unknown = sorted(set(grant) - _GRANT_KEYS)
        missing = sorted(_GRANT_REQUIRED - set(grant))
        if unknown or missing:
            problem = f"unknown argument {unknown[0]!r}" if unknown else f"missing argument {missing[0]!r}"
            raise ConsentError(f"grant #{index}: {problem}")
        for key in ("company_id", "product", "actor", "channel"):
            if not isinstance(grant[key], str):
                raise ConsentError(f"grant #{index}: {key} must be a string, got {type(grant[key]).__name__}")
        for key in ("at", "recorded_at"):
            if grant.get(key) is not None and not isinstance(grant[key], datetime):
                raise ConsentError(f"grant #{index}: {key} must be a datetime, got {type(grant[key]).__name__}")
        rows.append({"index": index, **{key: grant.get(key) for key in _GRANT_KEYS}})
    frame = pd.DataFrame(rows, columns=["index", *sorted(_GRANT_KEYS)], dtype=object)
    products = {key: _refusal(product_of, catalog, key) for key in set(frame["product"])}
    channels = {key: _refusal(check_channel, key) for key in set(frame["channel"])}
    frame["error"] = [
        products[product] or channels[channel] or _refusal(aware, at)
        or (None if version else refusals.NO_WORDING_VERSION)
        or (_refusal(aware, recorded) if recorded is not None else None)
        for product, channel, at, version, recorded in zip(
            frame["product"], frame["channel"], frame["at"], frame["wording_version"], frame["recorded_at"],
            strict=True,
        )
    ]
    frame["at"] = [as_utc(at) if error is None else at for at, error in zip(frame["at"], frame["error"], strict=True)]
    return frame


def _plan_grants(db: Db, catalog: Catalog, grants: pd.DataFrame) -> pd.DataFrame:
    """`grants` with `error` set where `grant` would refuse, checked against the database as it is now
    (companies, their current consents, their snapshot connections), in `grant`'s order of checks, and
    each accepted grant's scope (`scope_types`, `scope_connections`) and existing consent (`consent_id`,
    None when new)."""
    ids = sorted(set(grants["company_id"]))
    companies = select_frame(db, select(Company.id, Company.deleted_at), Company.id, ids)
    consents = select_frame(
        db, select(Consent.id, Consent.company_id, Consent.product, Consent.status, Consent.updated_at),
        Consent.company_id, ids,
    )
    snapshot = select_frame(
        db,
        select(Connection.id, Connection.company_id, Connection.source_type, Connection.status,
               Connection.deleted_at),
        Connection.company_id, ids,
    )
    plan = grants.merge(
        consents.rename(columns={"id": "consent_id", "status": "consent_status", "updated_at": "last_at"}),
        on=["company_id", "product"], how="left", validate="many_to_one",
    ).merge(companies.rename(columns={"id": "company_id"}).assign(known=True), on="company_id", how="left")
    plan = plan.sort_values("index", ignore_index=True)
    plan["consent_id"] = plan["consent_id"].astype(object).where(plan["consent_id"].notna(), None)

    errors = [e if isinstance(e, str) else None for e in plan["error"]]
    for i, (company_id, known, deleted_at) in enumerate(
        zip(plan["company_id"], plan["known"], plan["deleted_at"], strict=True)
    ):
        if errors[i] is None and pd.isna(known):
            errors[i] = refusals.unknown_company(company_id)
        elif errors[i] is None and pd.notna(deleted_at):
            errors[i] = refusals.company_deleted(company_id, deleted_at)
    passed_company = [e is None for e in errors]  # what a second grant of the same pair is judged after
    for i, (company_id, product, status, last, at) in enumerate(
        zip(plan["company_id"], plan["product"], plan["consent_status"], plan["last_at"], plan["at"], strict=True)
    ):
        if errors[i] is not None:
            continue
        if status == "active":
            errors[i] = refusals.already_granted(product, company_id)
        elif pd.notna(last) and at < as_utc(last):
            errors[i] = refusals.earlier_than_last(at, product, company_id, as_utc(last))
    plan["error"] = pd.Series(errors, index=plan.index, dtype=object)
    _scope_grants(catalog, plan, snapshot)
    # a grant of a pair that an earlier grant of the input records is refused, as `grant` would
    seen: set[tuple[str, str]] = set()
    for i, (company_id, product, error) in enumerate(
        zip(plan["company_id"], plan["product"], plan["error"], strict=True)
    ):
        if passed_company[i] and (company_id, product) in seen:
            plan.at[i, "error"] = refusals.already_granted(product, company_id)
            plan.at[i, "scope_types"] = plan.at[i, "scope_connections"] = None
        elif error is None:
            seen.add((company_id, product))
    return plan.drop(columns=["known", "deleted_at", "consent_status", "last_at"])


def _scope_grants(catalog: Catalog, plan: pd.DataFrame, snapshot: pd.DataFrame) -> None:
    """Resolve each still accepted grant's scope in `plan` (in place), as `resolve_grant` does: the
    default scope (the product's required types on the company's Linked connections carrying them)
    set-wise, with one join; a scope named with data types or connections grant by grant."""
    scope_types: list[tuple[str, ...] | None] = [None] * len(plan)
    scope_connections: list[tuple[str, ...] | None] = [None] * len(plan)
    errors = [e if isinstance(e, str) else None for e in plan["error"]]
    named = [
        e is None and bool(t or c)
        for e, t, c in zip(errors, plan["data_types"], plan["connections"], strict=True)
    ]
    for i in [i for i, flag in enumerate(named) if flag]:
        company_id = plan.at[i, "company_id"]
        try:
            scope = resolve_grant(
                catalog.product(plan.at[i, "product"]), company_id,
                snapshot[snapshot["company_id"] == company_id], plan.at[i, "data_types"],
                plan.at[i, "connections"],
            )
        except ConsentError as exc:
            errors[i] = str(exc)
        else:
            scope_types[i] = tuple(sorted(scope.data_types))
            scope_connections[i] = tuple(sorted(scope.connections))
    default = [i for i, (e, flag) in enumerate(zip(errors, named, strict=True)) if e is None and not flag]
    if default:
        wanted = plan.loc[default, ["index", "company_id", "product"]]
        products = {key: catalog.product(key) for key in set(wanted["product"])}
        sources = pd.DataFrame(
            [(key, DATA_TYPE_SOURCE[d]) for key, spec in products.items() for d in spec.required],
            columns=["product", "source_type"],
        ).drop_duplicates()
        usable = snapshot[(snapshot["status"] == "Linked") & snapshot["deleted_at"].isna()]
        chosen = (
            wanted.merge(sources, on="product")
            .merge(usable[["company_id", "source_type", "id"]], on=["company_id", "source_type"])
            .groupby("index")["id"]
            .agg(lambda ids: tuple(sorted(ids)))
            .to_dict()
        )
        for i in default:
            index, company_id, product = plan.at[i, "index"], plan.at[i, "company_id"], plan.at[i, "product"]
            required = products[product].required
            if index in chosen:
                scope_types[i], scope_connections[i] = tuple(sorted(required)), chosen[index]
            else:
                kinds = "/".join(sorted({DATA_TYPE_SOURCE[d] for d in required}))
                errors[i] = refusals.no_linked_connection(company_id, kinds, product)
    plan["error"] = pd.Series(errors, index=plan.index, dtype=object)
    plan["scope_types"] = pd.Series(scope_types, index=plan.index, dtype=object)
    plan["scope_connections"] = pd.Series(scope_connections, index=plan.index, dtype=object)


def _write_grants(db: Db, accepted: pd.DataFrame) -> None:
    """Write accepted grants (input order): the events first (their ids come back in order), then the
    consents (new rows, or revoked ones reactivated with their old scope replaced), then the scopes."""
    if accepted.empty:
        return
    grants = accepted.to_dict("records")
    for grant in grants:
        grant["existing"] = grant["consent_id"] is not None
        grant["consent_id"] = grant["consent_id"] or str(uuid.uuid4())
    events = [
        {
            "consent_id": g["consent_id"], "company_id": g["company_id"], "product": g["product"],
            "event_type": "granted", "data_types": list(g["scope_types"]),
            "connection_ids": list(g["scope_connections"]), "wording_version": g["wording_version"],
            "actor": g["actor"], "channel": g["channel"], "reason": None, "at": g["at"],
            "recorded_at": aware(g["recorded_at"]) if isinstance(g["recorded_at"], datetime) else g["at"],
        }
        for g in grants
    ]
    statement = insert(ConsentEvent).returning(ConsentEvent.id, sort_by_parameter_order=True)
    event_ids = list(db.execute(statement, events).scalars())
    state = [
        {
            "id": g["consent_id"], "company_id": g["company_id"], "product": g["product"], "status": "active",
            "wording_version": g["wording_version"], "actor": g["actor"], "channel": g["channel"],
            "granted_at": g["at"], "updated_at": g["at"], "revoked_at": None, "last_event_id": event_id,
        }
        for g, event_id in zip(grants, event_ids, strict=True)
    ]
    new = [row for row, g in zip(state, grants, strict=True) if not g["existing"]]
    again = [row for row, g in zip(state, grants, strict=True) if g["existing"]]
    if new:
        db.execute(insert(Consent), new)
    if again:
        db.execute(
            update(Consent)
            .where(Consent.id == bindparam("b_id"))
            .values(
                status="active", revoked_at=None, wording_version=bindparam("b_wording_version"),
                actor=bindparam("b_actor"), channel=bindparam("b_channel"),
                granted_at=bindparam("b_granted_at"), updated_at=bindparam("b_updated_at"),
                last_event_id=bindparam("b_last_event_id"),
            ),
            [
                {f"b_{key}": row[key] for key in (
                    "id", "wording_version", "actor", "channel", "granted_at", "updated_at", "last_event_id"
                )}
                for row in again
            ],
        )
        for ids in batched([row["id"] for row in again], CHUNK):
            db.execute(delete(ConsentDataType).where(ConsentDataType.consent_id.in_(ids)))
            db.execute(delete(ConsentConnection).where(ConsentConnection.consent_id.in_(ids)))
    types = [{"consent_id": g["consent_id"], "data_type": d} for g in grants for d in g["scope_types"]]
    linked = [{"consent_id": g["consent_id"], "connection_id": c} for g in grants for c in g["scope_connections"]]
    if types:
        db.execute(insert(ConsentDataType), types)
    if linked:
        db.execute(insert(ConsentConnection), linked)


def _refusal(check: Any, *args: Any) -> str | None:
    """The ConsentError message `check(*args)` raises, or None when it passes."""
    try:
        check(*args)
    except ConsentError as exc:
        return str(exc)
    return None


def _raise_first(plan: pd.DataFrame) -> None:
    refused = plan[plan["error"].notna()]
    if not refused.empty:
        first = refused.sort_values("index").iloc[0]
        more = f" ({len(refused) - 1} more refused)" if len(refused) > 1 else ""
        raise ConsentError(
            f"grant #{first['index']} ({first['company_id']}, {first['product']!r}): {first['error']}{more}; "
            "nothing was written"
        )
