"""`Idempotency-Key` on every POST: the first request with a key is answered and its response kept; a replay
(same key, same method, path and body) gets that response back and writes nothing; the same key with
another request is refused (422), and while the first is still being answered a replay gets 409.

Only successful answers are kept: a refused request wrote nothing, so its key stays free for a corrected
retry. A claim left by a process that died mid-answer is taken over after `STALE_AFTER`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from consent_lifecycle.api.keys import Caller
from consent_lifecycle.api.problems import Problem
from consent_lifecycle.clock import as_utc, utcnow
from consent_lifecycle.db.models import IdempotencyKey

HEADER = "Idempotency-Key"
STALE_AFTER = timedelta(minutes=5)

#: what a route computes: its status and JSON body (refusals are raised)
Answer = Callable[[], tuple[int, Any]]


def answer_once(request: Request, who: Caller, payload: Any, answer: Answer) -> Response:
    """`answer()` as a JSON response, once per Idempotency-Key (when the request carries one)."""
    key = request.headers.get(HEADER)
    if key is None:
        status, body = answer()
        return JSONResponse(body, status_code=status)
    if not 1 <= len(key) <= 255:
        raise Problem(422, f"header {HEADER}: give 1 to 255 characters (got {len(key)})")
    engine: Engine = request.app.state.engine
    fingerprint = _fingerprint(request, payload)
    stored = _claim(engine, who.key_id, key, fingerprint, utcnow())
    if stored is not None:
        return _replay(key, fingerprint, stored)
    try:
        status, body = answer()
    except BaseException:
        _release(engine, who.key_id, key)
        raise
    text = json.dumps(body)
    with engine.begin() as db:
        db.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.api_key_id == who.key_id, IdempotencyKey.key == key)
            .values(status_code=status, response_body=text)
        )
    return Response(text, status_code=status, media_type="application/json")


def _fingerprint(request: Request, payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.url.path}\n{canonical}".encode()).hexdigest()


def _claim(engine: Engine, key_id: int, key: str, fingerprint: str, now: datetime) -> dict[str, Any] | None:
    """None when this request now holds the key; else the row a first request left."""
    for _ in range(2):
        try:
            with engine.begin() as db:
                db.execute(
                    insert(IdempotencyKey).values(
                        api_key_id=key_id, key=key, request_hash=fingerprint, status_code=None,
                        response_body=None, created_at=now,
                    )
                )
            return None
        except IntegrityError:
            pass
        with engine.begin() as db:
            row = db.execute(
                select(IdempotencyKey.__table__).where(
                    IdempotencyKey.api_key_id == key_id, IdempotencyKey.key == key
                )
            ).mappings().first()
            if row is None:  # released in between: claim again
                continue
            if row["status_code"] is None and as_utc(row["created_at"]) < now - STALE_AFTER:
                db.execute(
                    delete(IdempotencyKey).where(
                        IdempotencyKey.api_key_id == key_id, IdempotencyKey.key == key,
                        IdempotencyKey.status_code.is_(None),
                    )
                )
                continue
            return dict(row)
    raise Problem(409, f"{HEADER} {key!r} is being used by another request at this moment; retry")


def _replay(key: str, fingerprint: str, stored: dict[str, Any]) -> Response:
    if stored["request_hash"] != fingerprint:
        raise Problem(
            422, f"{HEADER} {key!r} was already used for a different request (method, path or body); "
            "use a new key for a new request"
        )
    if stored["status_code"] is None:
        raise Problem(409, f"the first request with {HEADER} {key!r} is still being answered; retry")
    return Response(
        stored["response_body"], status_code=stored["status_code"], media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


def _release(engine: Engine, key_id: int, key: str) -> None:
    with engine.begin() as db:
        db.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.api_key_id == key_id, IdempotencyKey.key == key, IdempotencyKey.status_code.is_(None)
            )
        )
