"""The notification outbox against a real HTTP receiver on loopback, on SQLite and PostgreSQL.

Queue once per key; deliver at most once per key (claim, send, mark), across reruns, retries and a crash
between send and mark; signed webhooks whose secret never leaks.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, insert, select

from consent_lifecycle.db import models as m
from consent_lifecycle.notify import outbox
from consent_lifecycle.notify.channels import (
    DeliveryError,
    FileChannel,
    WebhookChannel,
    channel_from_settings,
    signature,
    verify,
)
from consent_lifecycle.settings import Settings

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
SECRET = "outbox-test-secret-5f0c2a9e7b"
COMPANY = "11111111-1111-4111-8111-111111111111"


# --- a real receiver ---------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str = ""
    secret: SecretStr = field(default_factory=lambda: SecretStr(SECRET))
    #: every request as it arrived: key, timestamp, body, whether the signature checked out
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: what the receiver acted on: first body per Idempotency-Key (duplicates are acknowledged, dropped)
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: statuses to answer first, in order; then `default`
    answers: list[int] = field(default_factory=list)
    default: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def keys(self) -> list[str]:
        return [r["key"] for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            key = self.headers.get("Idempotency-Key")
            timestamp = self.headers.get("X-Consent-Timestamp", "")
            signed = verify(state.secret, timestamp, body, self.headers.get("X-Consent-Signature", ""))
            with state.lock:
                state.requests.append({"key": key, "timestamp": timestamp, "body": json.loads(body), "signed": signed})
                status = state.answers.pop(0) if state.answers else state.default
                if not signed:
                    status = 401
                if status < 300 and key not in state.delivered:
                    state.delivered[key] = json.loads(body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/consent"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def webhook(receiver: Receiver, *, retries: int = 3, secret: str = SECRET) -> WebhookChannel:
    return WebhookChannel(receiver.url, SecretStr(secret), timeout=5.0, retries=retries, backoff=0.0)


# --- helpers -----------------------------------------------------------------------------------------


def add_company(engine: Engine, company_id: str = COMPANY) -> None:
    with engine.begin() as db:
        db.execute(insert(m.Company), [{
            "id": company_id, "name": "Acme Ltd", "jurisdiction": "uk", "tags": {"region": "uk"},
            "redirect": f"https://link.codat.io/company/{company_id}", "first_seen_at": T0, "last_seen_at": T0,
        }])


def note(key: str, **overrides: Any) -> dict[str, Any]:
    row = {
        "key": key, "company_id": COMPANY, "connection_id": None, "kind": "expiry_warning", "channel": "webhook",
        "payload": {"threshold_days": 7, "expires_at": "2026-12-05T09:00:00Z", "link": f"https://link/{key}"},
    }
    return row | overrides


def queue(engine: Engine, rows: list[dict[str, Any]], now: datetime = T0) -> int:
    with engine.begin() as db:
        return outbox.queue(db, rows, now)


def by_key(engine: Engine) -> dict[str, dict[str, Any]]:
    return {n["key"]: n for n in outbox.list_notifications(engine)}


# --- queue ------------------------------------------------------------------------------------------


def test_queue_is_once_per_key(engine: Engine) -> None:
    add_company(engine)
    assert queue(engine, [note("a"), note("b"), note("a")]) == 2
    assert queue(engine, [note("a"), note("b"), note("c")], T0 + timedelta(hours=1)) == 1
    assert queue(engine, []) == 0
    with engine.connect() as db:
        assert db.execute(select(func.count()).select_from(m.Notification)).scalar_one() == 3
    listed = by_key(engine)
    assert listed["a"] == {
        "id": listed["a"]["id"], "key": "a", "company_id": COMPANY, "connection_id": None,
        "kind": "expiry_warning", "channel": "webhook", "status": "pending", "attempts": 0, "last_error": None,
        "created_at": "2026-11-28T09:00:00Z", "due_at": "2026-11-28T09:00:00Z", "sent_at": None,
        "threshold_days": 7, "expires_at": "2026-12-05T09:00:00Z", "link": "https://link/a",
    }
    assert listed["c"]["created_at"] == "2026-11-28T10:00:00Z"
    assert [n["key"] for n in outbox.list_notifications(engine, status="pending", company_id=COMPANY)] == ["a", "b", "c"]
    assert outbox.list_notifications(engine, status="sent") == []
    with pytest.raises(ValueError, match="unknown notification status"):
        outbox.list_notifications(engine, status="done")


def test_payload_fields_are_lifted_only_when_present(engine: Engine) -> None:
    add_company(engine)
    queue(engine, [note("bare", payload={}, kind="expired")])
    listed = by_key(engine)["bare"]
    assert not {"threshold_days", "expires_at", "link"} & listed.keys() and listed["kind"] == "expired"


# --- deliver ----------------------------------------------------------------------------------------


def test_deliver_twice_posts_each_key_once(engine: Engine, receiver: Receiver) -> None:
    add_company(engine)
    queue(engine, [note(f"k{i}") for i in range(3)])
    queue(engine, [note(f"k{i}") for i in range(3)])  # the scan ran twice
    channel = webhook(receiver)
    assert outbox.deliver(engine, channel, T0, worker="w1") == {"claimed": 3, "sent": 3, "retrying": 0, "failed": 0}
    assert outbox.deliver(engine, channel, T0 + timedelta(hours=1), worker="w1")["claimed"] == 0
    assert sorted(receiver.keys) == ["k0", "k1", "k2"]  # exactly once each
    assert all(r["signed"] for r in receiver.requests)
    assert receiver.delivered["k1"] == {
        "key": "k1", "kind": "expiry_warning", "company_id": COMPANY, "connection_id": None, "threshold_days": 7,
        "expires_at": "2026-12-05T09:00:00Z", "link": "https://link/k1",
    }
    for n in by_key(engine).values():
        assert (n["status"], n["attempts"], n["sent_at"], n["last_error"]) == ("sent", 1, "2026-11-28T09:00:00Z", None)


def test_not_yet_due_rows_wait(engine: Engine, receiver: Receiver) -> None:
    add_company(engine)
    queue(engine, [note("later", due_at=T0 + timedelta(days=1))])
    assert outbox.deliver(engine, webhook(receiver), T0, worker="w")["claimed"] == 0
    assert outbox.deliver(engine, webhook(receiver), T0 + timedelta(days=1), worker="w")["sent"] == 1
    assert receiver.keys == ["later"]


def test_5xx_twice_then_200_is_delivered_within_one_send(engine: Engine, receiver: Receiver) -> None:
    add_company(engine)
    queue(engine, [note("flaky")])
    receiver.answers = [500, 503]
    assert outbox.deliver(engine, webhook(receiver, retries=3), T0, worker="w")["sent"] == 1
    assert receiver.keys == ["flaky", "flaky", "flaky"]  # the same Idempotency-Key on every try
    assert list(receiver.delivered) == ["flaky"]
    assert (by_key(engine)["flaky"]["status"], by_key(engine)["flaky"]["attempts"]) == ("sent", 1)


def test_5xx_twice_then_200_across_runs_counts_attempts(engine: Engine, receiver: Receiver) -> None:
    add_company(engine)
    queue(engine, [note("flaky")])
    receiver.answers = [500, 429]
    channel = webhook(receiver, retries=0)
    first = outbox.deliver(engine, channel, T0, worker="w")
    assert first == {"claimed": 1, "sent": 0, "retrying": 1, "failed": 0}
    row = by_key(engine)["flaky"]
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, f"{receiver.url} answered 500")
    assert row["due_at"] == "2026-11-28T09:01:00Z"  # backoff: due again a minute later
    assert outbox.deliver(engine, channel, T0 + timedelta(seconds=30), worker="w")["claimed"] == 0
    assert outbox.deliver(engine, channel, T0 + timedelta(minutes=1), worker="w")["retrying"] == 1
    assert by_key(engine)["flaky"]["due_at"] == "2026-11-28T09:03:00Z"  # then two minutes
    assert outbox.deliver(engine, channel, T0 + timedelta(minutes=3), worker="w")["sent"] == 1
    row = by_key(engine)["flaky"]
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, None)
    assert receiver.keys == ["flaky"] * 3 and list(receiver.delivered) == ["flaky"]


def test_permanent_failure_is_failed_after_max_attempts(engine: Engine, receiver: Receiver) -> None:
    add_company(engine)
    queue(engine, [note("doomed")])
    receiver.default = 500
    channel = webhook(receiver, retries=1)
    results = [
        outbox.deliver(engine, channel, T0 + timedelta(hours=run), worker="w", max_attempts=3) for run in range(5)
    ]
    assert [(r["retrying"], r["failed"]) for r in results] == [(1, 0), (1, 0), (0, 1), (0, 0), (0, 0)]
    row = by_key(engine)["doomed"]
    assert (row["status"], row["attempts"], row["sent_at"]) == ("failed", 3, None)
    assert row["last_error"] == f"{receiver.url} answered 500"
    assert len(receiver.requests) == 3 * 2  # 3 attempts, each with one in-channel retry
    assert receiver.delivered == {} and outbox.list_notifications(engine, status="failed")[0]["key"] == "doomed"


def test_4xx_is_not_retried_within_a_send(engine: Engine, receiver: Receiver) -> None:
    add_company(engine)
    queue(engine, [note("refused")])
    receiver.answers = [400]
    assert outbox.deliver(engine, webhook(receiver, retries=3), T0, worker="w")["retrying"] == 1
    assert receiver.keys == ["refused"]


def test_crash_between_send_and_mark_resends_with_the_same_key(engine: Engine, receiver: Receiver) -> None:
    add_company(engine)
    queue(engine, [note("x"), note("y")])
    channel = webhook(receiver)
    # worker w1 claims and sends, then dies before marking
    claimed = outbox.claim(engine, T0, worker="w1")
    assert [r["key"] for r in claimed] == ["x", "y"]
    for row in claimed:
        channel.send(outbox.message(row))
    assert {n["status"] for n in outbox.list_notifications(engine)} == {"sending"}
    # inside the lease nobody touches them; after it, they are sent again with the same key
    assert outbox.deliver(engine, channel, T0 + timedelta(minutes=4), worker="w2")["claimed"] == 0
    assert outbox.deliver(engine, channel, T0 + timedelta(minutes=6), worker="w2")["sent"] == 2
    assert sorted(receiver.keys) == ["x", "x", "y", "y"]
    assert sorted(receiver.delivered) == ["x", "y"]  # the receiver de-duplicated by Idempotency-Key
    assert receiver.delivered["x"] == [r["body"] for r in receiver.requests if r["key"] == "x"][1]
    for n in by_key(engine).values():
        assert (n["status"], n["attempts"], n["sent_at"]) == ("sent", 2, "2026-11-28T09:06:00Z")
    assert outbox.deliver(engine, channel, T0 + timedelta(hours=1), worker="w3")["claimed"] == 0
    assert len(receiver.requests) == 4


def test_a_late_mark_after_a_lost_lease_does_not_overwrite(engine: Engine, receiver: Receiver) -> None:
    add_company(engine)
    queue(engine, [note("slow")])
    stale = outbox.claim(engine, T0, worker="w1")[0]
    fresh = outbox.claim(engine, T0 + timedelta(minutes=6), worker="w2")[0]
    assert (fresh["claimed_by"], fresh["attempts"]) == ("w2", 2)
    outbox._mark(engine, stale, T0, status="pending", last_error="late")  # w1 wakes up: ignored
    row = by_key(engine)["slow"]
    assert (row["status"], row["last_error"]) == ("sending", None)


def test_a_crash_on_the_last_attempt_is_failed_not_resent(engine: Engine, receiver: Receiver) -> None:
    add_company(engine)
    queue(engine, [note("last")])
    outbox.claim(engine, T0, worker="w1", max_attempts=1)
    result = outbox.deliver(engine, webhook(receiver), T0 + timedelta(minutes=6), worker="w2", max_attempts=1)
    assert result == {"claimed": 0, "sent": 0, "retrying": 0, "failed": 1}
    assert by_key(engine)["last"]["status"] == "failed" and receiver.requests == []


def test_concurrent_workers_send_each_key_once(engine: Engine, receiver: Receiver) -> None:
    add_company(engine)
    queue(engine, [note(f"c{i:03d}") for i in range(60)])
    results: list[dict[str, int]] = []

    def work(name: str) -> None:
        results.append(outbox.deliver(engine, webhook(receiver), T0, worker=name, limit=7))

    for _round in range(6):
        threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(r["sent"] for r in results) == 60
    assert sorted(receiver.keys) == sorted(f"c{i:03d}" for i in range(60))  # no key twice
    assert {n["status"] for n in outbox.list_notifications(engine)} == {"sent"}


# --- signatures and the secret ----------------------------------------------------------------------


def test_signature_checks_out_with_the_secret_only(receiver: Receiver) -> None:
    body = b'{"key":"k"}'
    good = signature(SecretStr(SECRET), "1764320400", body)
    assert good.startswith("sha256=") and len(good) == len("sha256=") + 64
    assert verify(SecretStr(SECRET), "1764320400", body, good)
    assert not verify(SecretStr("another-secret"), "1764320400", body, good)
    assert not verify(SecretStr(SECRET), "1764320401", body, good)  # the timestamp is covered
    assert not verify(SecretStr(SECRET), "1764320400", b'{"key":"K"}', good)  # and the body
    # over the wire: the receiver accepts ours and refuses a channel signing with another secret
    webhook(receiver).send({"key": "ok", "kind": "expired"})
    with pytest.raises(DeliveryError, match="answered 401"):
        webhook(receiver, secret="another-secret", retries=0).send({"key": "forged", "kind": "expired"})
    assert [(r["key"], r["signed"]) for r in receiver.requests] == [("ok", True), ("forged", False)]
    assert list(receiver.delivered) == ["ok"]


def test_timestamp_header_comes_from_the_clock(receiver: Receiver) -> None:
    channel = WebhookChannel(receiver.url, SecretStr(SECRET), clock=lambda: T0)
    channel.send({"key": "t"})
    assert receiver.requests[0]["timestamp"] == str(int(T0.timestamp())) and receiver.requests[0]["signed"]


def test_the_secret_appears_in_no_repr_log_or_error(
    engine: Engine, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    add_company(engine)
    queue(engine, [note("s1"), note("s2")])
    channel = WebhookChannel(receiver.url, SecretStr(SECRET), retries=1, backoff=0.0)
    receiver.answers = [500, 500]  # s1 fails (retried once), s2 goes through
    assert outbox.deliver(engine, channel, T0, worker="w") == {"claimed": 2, "sent": 1, "retrying": 1, "failed": 0}
    receiver.answers = [500, 500]
    with pytest.raises(DeliveryError) as failed:
        channel.send({"key": "s3"})
    closed = WebhookChannel("http://127.0.0.1:9/unreachable", SecretStr(SECRET), retries=1, backoff=0.0, timeout=1.0)
    with pytest.raises(DeliveryError) as refused:
        closed.send({"key": "s4"})
    settings = Settings(notify_webhook_url=receiver.url, notify_webhook_secret=SecretStr(SECRET))
    texts = [
        repr(channel), str(channel), repr(vars(channel)), repr(closed), repr(settings), str(settings),
        repr(channel_from_settings(settings)), caplog.text, str(failed.value), repr(failed.value),
        str(refused.value), repr(refused.value), json.dumps(outbox.list_notifications(engine)),
        *(json.dumps(r) for r in receiver.requests),
    ]
    assert "answered 500" in caplog.text and "ConnectError" in str(refused.value)
    for text in texts:
        assert SECRET not in text


def test_errors_and_own_logs_drop_url_credentials_and_query(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="consent_lifecycle")
    channel = WebhookChannel("http://user:pw@127.0.0.1:9/h?token=abc", SecretStr(SECRET), retries=0, timeout=1.0)
    with pytest.raises(DeliveryError) as refused:
        channel.send({"key": "k"})
    for text in (str(refused.value), repr(channel), caplog.text):
        assert "token=abc" not in text and "pw" not in text


# --- the file channel and settings -------------------------------------------------------------------


def test_file_channel_appends_one_json_line_per_notification(engine: Engine, tmp_path: Path) -> None:
    add_company(engine)
    queue(engine, [note("f1", channel="file"), note("f2", channel="file")])
    path = tmp_path / "out" / "notifications.jsonl"
    assert outbox.deliver(engine, FileChannel(path), T0, worker="w")["sent"] == 2
    assert outbox.deliver(engine, FileChannel(path), T0 + timedelta(hours=1), worker="w")["claimed"] == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["key"] for line in lines] == ["f1", "f2"] and lines[0]["link"] == "https://link/f1"


def test_file_channel_failure_is_a_delivery_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a directory")
    with pytest.raises(DeliveryError, match="cannot append"):
        FileChannel(tmp_path / "blocker" / "n.jsonl").send({"key": "k"})


def test_channel_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CONSENT_NOTIFY_WEBHOOK_URL", "CONSENT_NOTIFY_WEBHOOK_SECRET", "CONSENT_NOTIFY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    default = channel_from_settings(Settings())
    assert isinstance(default, FileChannel) and default.path == Path(".consent/notifications.jsonl")
    monkeypatch.setenv("CONSENT_NOTIFY_WEBHOOK_URL", "https://hooks.example/consent")
    with pytest.raises(ValueError, match="CONSENT_NOTIFY_WEBHOOK_SECRET"):
        channel_from_settings(Settings())
    monkeypatch.setenv("CONSENT_NOTIFY_WEBHOOK_SECRET", SECRET)
    chosen = channel_from_settings(Settings())
    assert isinstance(chosen, WebhookChannel) and chosen.url == "https://hooks.example/consent"
    assert SECRET not in repr(chosen)
