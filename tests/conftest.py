"""Shared fixtures. Each part keeps its fixtures in a plugin module listed here."""

pytest_plugins = [
    "tests.fixtures_prefect",
    "tests.fixtures_sandbox",
    "tests.fixtures_db",
    "tests.fixtures_webhook",
    "tests.fixtures_flows",
]
