"""One Prefect test harness for the whole session (a temporary server with its own SQLite database)."""

from __future__ import annotations

import os
import tempfile

import pytest

# Before Prefect is imported anywhere: no telemetry, quiet logs, an isolated home, patience on a 2-core box.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="consent-prefect-home-"))
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    # xdist's workers inherit the controller's environment: each gets a home of its own beneath it (local
    # result storage and transaction records must not be shared between two sessions' runs)
    os.environ["PREFECT_HOME"] = os.path.join(os.environ["PREFECT_HOME"], worker)
    os.makedirs(os.environ["PREFECT_HOME"], exist_ok=True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
