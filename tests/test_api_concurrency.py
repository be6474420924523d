"""Two product backends racing grants and revokes of one company through the API (real HTTP, PostgreSQL,
the server's thread pool running both at once) leave a history some serial order of the writes gives."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fixtures_api import ACME
from tests.test_ledger_concurrency import assert_serial_history


def _client_loop(api, key: str, product: str, seed: int, rounds: int) -> dict[int, int]:
    rng = random.Random(seed)
    statuses: dict[int, int] = {}
    with api.client(key) as client:
        for _ in range(rounds):
            action = rng.choice(["", "", "/revoke", "/reconfirm"])
            response = client.post(f"/v1/companies/{ACME}/consents/{product}{action}")
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    return statuses


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_racing_grants_and_revokes_leave_a_serial_history(api):
    api.add_key("lending-2", "lending")
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = [
            pool.submit(_client_loop, api, key, product, seed, 40)
            for seed, (key, product) in enumerate(
                [("lending-app", "lending"), ("lending-2", "lending"), ("dashboard-app", "dashboard"),
                 ("admin", "dashboard")]
            )
        ]
        statuses = [run.result() for run in runs]
    total: dict[int, int] = {}
    for counts in statuses:
        for status, n in counts.items():
            total[status] = total.get(status, 0) + n
    assert set(total) <= {200, 201, 409}, total  # accepted or refused as a conflict: never a server error
    assert total.get(201, 0) > 5 and total.get(409, 0) > 5, total
    assert_serial_history(api.engine)
