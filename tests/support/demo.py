"""`scripts/demo.py` as a user runs it, in an environment of its own, possibly started
early in the background.

The demo is the longest end-to-end test and shares nothing with the others (its own
MLflow store, Metaflow datastore and home, model server, capture database). When the
session is going to run tests/test_demo.py, tests/conftest.py starts it as soon as
collection ends (`start_in_background`), so it runs while the other tests do, and the
demo test waits for it (`started_or_new`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from support.paths import DEMO, REPO_ROOT
from support.places import Place
from support.state import clean_environment

SAMPLES = 200  # rows per round; 150 would leave the accuracy alert a 3-sigma event
DEMO_TIMEOUT = 1800  # seconds; about 7 minutes on a loaded two-core machine


@dataclass
class DemoRun:
    """A running (or finished) demo process and the place its backend uses."""

    place: Place
    process: subprocess.Popen[bytes]
    started: float

    @property
    def stdout_path(self) -> Path:
        return self.place.directory / "demo.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.place.directory / "demo.stderr"

    def wait(self, timeout: float = DEMO_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Wait for the demo (at most `timeout` seconds from its start); its output."""
        remaining = max(1.0, timeout - (time.monotonic() - self.started))
        try:
            self.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return subprocess.CompletedProcess(
            self.process.args,
            self.process.returncode,
            self.stdout_path.read_text(errors="replace"),
            self.stderr_path.read_text(errors="replace"),
        )

    def stop(self) -> None:
        """End the demo if it still runs, and whatever server it left behind."""
        from backends.local_server import LocalServer

        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        LocalServer(self.place.state_dir).stop()


def start_demo(root: Path) -> DemoRun:
    """Start the demo at small settings with its backend and state under `root`."""
    place = Place(root)
    command = [
        sys.executable, str(DEMO),
        "--config", str(place.write_config()),
        "--training-epochs", "5",
        "--folds", "2",
        "--samples", str(SAMPLES),
        "--stop-server",
    ]  # fmt: skip
    with (
        open(place.directory / "demo.stdout", "wb") as stdout,
        open(place.directory / "demo.stderr", "wb") as stderr,
    ):
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=clean_environment(place.directory, user="demo-test"),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    return DemoRun(place, process, time.monotonic())


_BACKGROUND: list[DemoRun] = []


def start_in_background(root: Path) -> None:
    if not _BACKGROUND:
        _BACKGROUND.append(start_demo(root))


def started_or_new(root: Path) -> DemoRun:
    """The demo started in the background, or a new one under `root`."""
    return _BACKGROUND.pop() if _BACKGROUND else start_demo(root)


def stop_background() -> None:
    """End a background demo no test waited for (the session stopped early)."""
    while _BACKGROUND:
        _BACKGROUND.pop().stop()
