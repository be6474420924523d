"""Browser fixtures: Debian's Chromium (`/usr/bin/chromium`, the `chromium` package) driven by Playwright.

Nothing downloads a browser: Playwright launches the system's Chromium by `executable_path` (set
CONSENT_CHROMIUM to use another). Tests that need it take `page` and carry the `browser` mark.
Without Chromium they are skipped on a developer's machine, and FAIL in CI (CI=true): `.ci/run` installs it.

- `browser`: one headless Chromium per test module (~0.5 s to start).
- `page`: a fresh context (its own cookies) and page for each test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ENV = "CONSENT_CHROMIUM"
#: root in a container has no user namespaces for Chromium's sandbox; /dev/shm is small there
LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


def chromium_path() -> str | None:
    wanted = os.environ.get(CHROMIUM_ENV)
    if wanted:
        return wanted if os.access(wanted, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true: the browser tests must run; `.ci/run` installs it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        _missing(f"Chromium not found: `apt-get install chromium`, or set {CHROMIUM_ENV} to its executable")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed: `pip install -e '.[test]'`")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, headless=True, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()
