"""Headless Chromium for the card rendering tests: found, or skipped (failed in CI).

Without a browser the rendering tests skip, saying how to install one, so `uv run pytest`
passes on a fresh machine. `.ci/run` sets REQUIRE_BROWSER=1, which makes a missing
browser a failure: CI renders every card.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_BROWSER = "REQUIRE_BROWSER"
INSTALL_HINT = (
    "the card rendering tests need a `chromium` on PATH: install Debian's package with "
    "`apt-get install chromium` (.ci/run does)"
)


def find_chromium() -> str | None:
    """The `chromium` on PATH, or None."""
    return shutil.which("chromium")


def browser_required() -> bool:
    return os.environ.get(REQUIRE_BROWSER, "").strip().lower() not in {"", "0", "false", "no"}


def require_chromium() -> str:
    """Chromium's path; without one, skip the test (or fail it under REQUIRE_BROWSER=1)."""
    path = find_chromium()
    if path is not None:
        return path
    if browser_required():
        pytest.fail(f"Chromium is not installed and {REQUIRE_BROWSER} is set: {INSTALL_HINT}.")
    pytest.skip(f"Chromium is not installed: {INSTALL_HINT}; {REQUIRE_BROWSER}=1 fails instead.")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of headless Chromium (see `require_chromium`)."""
    return require_chromium()
