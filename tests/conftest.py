"""Shared fixtures. Each part keeps its fixtures in a plugin module listed here."""

from __future__ import annotations

import os

import pytest

# the flows' own cap on Codat requests (500 a minute by default) is off in tests: the sandbox is not Codat.
# Its own test sets a cap on the client it builds.
os.environ["CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE"] = "0"

pytest_plugins = [
    "tests.fixtures_prefect",
    "tests.fixtures_sandbox",
    "tests.fixtures_db",
    "tests.fixtures_webhook",
    "tests.fixtures_receiver",
    "tests.fixtures_flows",
    "tests.fixtures_api",
    "tests.fixtures_browser",
    "tests.fixtures_journey",
]


def _weight(item: pytest.Item) -> int:
    """0: a real Prefect server in subprocesses (e2e); 1: flows through the Prefect harness, often with
    subprocesses (crash trials, concurrent runs), or a Hypothesis property (many examples); 2: the rest."""
    if item.get_closest_marker("e2e"):
        return 0
    if item.get_closest_marker("prefect") or getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        return 1
    return 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first (stable: file order within each weight). `make test` hands the test modules to
    pytest-xdist workers in this order as they free up (`--dist loadscope --no-loadscope-reorder`: a module's
    tests stay on one worker, with its module-scoped fixtures): started early, the slow ones run beside the
    many quick ones instead of being what one worker is still running when the other has finished."""
    items.sort(key=_weight)
