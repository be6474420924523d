"""`consent api-keys create / list / revoke`: a key is printed once, alone on the last line, kept only as
its hash, and refused by the API as soon as it is revoked; bad input exits 2 and writes nothing."""

from __future__ import annotations

import json
import os

import httpx
from sqlalchemy import select

from consent_lifecycle.api import create_app
from consent_lifecycle.api.keys import digest
from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.models import ApiKey
from tests.fixtures_api import ACME, serve_app
from tests.fixtures_cli import consent


def _cli(sqlite_url, tmp_path, *args):
    return consent(args, {**os.environ, "CONSENT_DATABASE_URL": sqlite_url}, tmp_path)


def test_a_key_is_shown_once_kept_as_a_hash_and_refused_once_revoked(sqlite_url, tmp_path):
    made = _cli(sqlite_url, tmp_path, "api-keys", "create", "--product", "lending")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("clk_") and " " not in key and "'lending-1'" in made.stdout
    engine = make_engine(sqlite_url)
    with engine.connect() as db:
        stored = db.execute(select(ApiKey.__table__)).mappings().one()
    assert stored["key_hash"] == digest(key) and key not in json.dumps(dict(stored), default=str)

    listed = _cli(sqlite_url, tmp_path, "api-keys", "list", "--json")
    assert json.loads(listed.stdout) == [
        {"name": "lending-1", "scope": "product", "product": "lending", "prefix": key[:8],
         "created_at": json.loads(listed.stdout)[0]["created_at"], "revoked_at": None}
    ]
    assert key not in listed.stdout

    with serve_app(create_app(engine, load_catalog())) as url:
        ask = lambda: httpx.get(f"{url}/v1/companies/{ACME}/consents", headers={"Authorization": f"Bearer {key}"})
        assert ask().status_code == 404  # authenticated: the company is just not in this empty snapshot
        assert _cli(sqlite_url, tmp_path, "api-keys", "revoke", "lending-1").returncode == 0
        refused = ask()
    assert refused.status_code == 401 and key not in refused.text
    assert _cli(sqlite_url, tmp_path, "api-keys", "list").stdout.strip() == "no API keys"
    assert "lending-1" in _cli(sqlite_url, tmp_path, "api-keys", "list", "--all").stdout
    engine.dispose()


def test_bad_key_requests_exit_2_and_write_nothing(sqlite_url, tmp_path):
    for args, needle in [
        (("--product", "mortgages"), "mortgages"),
        (("--product", "lending", "--admin"), "one of them"),
        ((), "--admin"),
        (("--admin", "--name", "Bad Name"), "Bad Name"),
    ]:
        result = _cli(sqlite_url, tmp_path, "api-keys", "create", *args)
        assert result.returncode == 2 and needle in result.stderr + result.stdout, (args, result)
    assert _cli(sqlite_url, tmp_path, "api-keys", "list", "--all", "--json").stdout.strip() == "[]"
    assert _cli(sqlite_url, tmp_path, "api-keys", "create", "--admin", "--name", "ops").returncode == 0
    again = _cli(sqlite_url, tmp_path, "api-keys", "create", "--admin", "--name", "ops")
    assert again.returncode == 2 and "'ops' exists already" in again.stderr
    gone = _cli(sqlite_url, tmp_path, "api-keys", "revoke", "nobody")
    assert gone.returncode == 2 and "'nobody'" in gone.stderr
