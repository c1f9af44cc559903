"""Headless Chromium for the card rendering tests: found, or skipped (failed in CI).

Without a browser the rendering tests skip, saying how to install one, so `uv run pytest`
passes on a fresh machine. `.ci/run` sets REQUIRE_BROWSER=1, which makes a missing
browser a failure: CI renders every card.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

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


def dump_dom(chromium: str, page: str, directory: Path, name: str, timeout: float = 180) -> str:
    """Load `page` (HTML text) from a file in headless Chromium with every host name
    unresolvable (a page must carry everything it shows); the DOM after its scripts ran."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.html"
    path.write_text(page, encoding="utf-8")
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={directory / f'{name}-profile'}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        path.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"chromium exited {result.returncode}:\n{result.stderr[-3000:]}"
    assert "<body" in result.stdout, f"chromium dumped no DOM:\n{result.stderr[-3000:]}"
    return result.stdout


# Written into the page: once it has loaded (and its scripts have drawn, half a second
# later), the natural size of every image, which is 0x0 for one the browser cannot decode.
_IMAGE_SIZES_PROBE = (
    "<script>addEventListener('load', () => setTimeout(() => {"
    "document.body.dataset.images = [...document.images]"
    ".map(image => image.naturalWidth + 'x' + image.naturalHeight).join(' ');"
    "}, 500));</script>"
)


def decoded_image_sizes(
    chromium: str, page: str, directory: Path, name: str, timeout: float = 180
) -> tuple[str, list[str]]:
    """Load `page` as `dump_dom` does; its final DOM and each image's `WIDTHxHEIGHT`."""
    head, body_end, tail = page.rpartition("</body>")  # a page's scripts may hold the text too
    if not body_end:
        raise ValueError(f"{name}: the page has no </body> to put the image probe before")
    dom = dump_dom(chromium, head + _IMAGE_SIZES_PROBE + body_end + tail, directory, name, timeout)
    sizes = re.search(r'<body[^>]*\bdata-images="([^"]*)"', dom)
    return dom, sizes.group(1).split() if sizes else []
