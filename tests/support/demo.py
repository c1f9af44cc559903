"""`scripts/demo.py` as a user runs it, in an environment of its own, started early in
the background and shared by every process of one test session.

The demo is the longest end-to-end test and shares nothing with the others (its own
MLflow store, Metaflow datastore and home, model server, capture database). When the
session is going to run tests/test_demo.py, tests/conftest.py starts it as soon as
collection ends (`start_in_background`), so it runs while the other tests do, and the
demo test waits for it (`shared_demo`).

Under pytest-xdist every worker collects every test, and any of them may be handed the
demo's tests: the first worker to claim `<shared root>/demo` starts the demo, in a
wrapper that writes its exit code to a file, and records where it runs in `run.json`;
the worker that runs the demo's tests reads that record and waits for the exit code.
The session's controller (the one process without xdist) ends a demo nobody waited for
when the session ends (`stop_background`). The shared root is the controller's session
directory, which xdist workers inherit through the environment (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
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
RECORD_TIMEOUT = 60  # seconds to wait for the claiming worker to write `run.json`

# Runs the command given after the exit-code file; writes its exit code there, so that a
# process other than the one that started it can wait for it.
_WRAPPER = (
    "import subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1] + '.part', 'w').write(str(code))\n"
    "import os; os.replace(sys.argv[1] + '.part', sys.argv[1])\n"
)


@dataclass
class DemoRun:
    """A running (or finished) demo, as `run.json` records it."""

    place: Place
    pid: int  # the wrapper's; it leads a process group of its own
    started: float  # time.time() when it started

    @property
    def stdout_path(self) -> Path:
        return self.place.directory / "demo.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.place.directory / "demo.stderr"

    @property
    def log_path(self) -> Path:
        """The full log of every pipeline run (`--log`); the terminal gets a line each."""
        return self.place.directory / "demo.log"

    @property
    def exit_code_path(self) -> Path:
        return self.place.directory / "demo.exit-code"

    def returncode(self) -> int | None:
        """The demo's exit code, or None while it runs."""
        if not self.exit_code_path.exists():
            return None
        return int(self.exit_code_path.read_text())

    def wait(self, timeout: float = DEMO_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Wait for the demo (at most `timeout` seconds from its start); its output.

        A demo that times out is killed and reported with exit code -9."""
        deadline = self.started + timeout
        while self.returncode() is None and time.time() < deadline:
            time.sleep(0.5)
        code = self.returncode()
        if code is None:
            self.kill()
            code = -signal.SIGKILL
        return subprocess.CompletedProcess(
            [sys.executable, str(DEMO)],
            code,
            self.stdout_path.read_text(errors="replace"),
            self.stderr_path.read_text(errors="replace"),
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def stop(self) -> None:
        """End the demo if it still runs, and whatever server it left behind."""
        from backends.local_server import LocalServer

        if self.returncode() is None:
            self.kill()
        LocalServer(self.place.state_dir).stop()

    def save(self, path: Path) -> None:
        record = {"directory": str(self.place.directory), "target": self.place.target}
        record |= {"pid": self.pid, "started": self.started}
        path.with_suffix(".part").write_text(json.dumps(record))
        path.with_suffix(".part").replace(path)

    @classmethod
    def load(cls, path: Path) -> DemoRun:
        record = json.loads(path.read_text())
        place = Place(Path(record["directory"]), target=record["target"])
        return cls(place, record["pid"], record["started"])


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
    run = DemoRun(place, pid=0, started=time.time())
    command += ["--log", str(run.log_path)]
    with open(run.stdout_path, "wb") as stdout, open(run.stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, str(run.exit_code_path), *command],
            cwd=REPO_ROOT,
            env=clean_environment(place.directory, user="demo-test"),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group, which `kill` ends whole
        )
    run.pid = process.pid
    return run


def _record(shared_root: Path) -> Path:
    return shared_root / "demo" / "run.json"


def start_in_background(shared_root: Path) -> None:
    """Start the demo under `shared_root/demo` unless a process of this session has."""
    directory = shared_root / "demo"
    try:
        directory.mkdir(parents=True)  # the claim: exactly one process succeeds
    except FileExistsError:
        return
    start_demo(directory / "run").save(_record(shared_root))


def shared_demo(shared_root: Path) -> DemoRun:
    """The session's demo: started in the background, or now if nobody has."""
    start_in_background(shared_root)
    record = _record(shared_root)
    deadline = time.monotonic() + RECORD_TIMEOUT
    while not record.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{record.parent} was claimed, but no demo was recorded there")
        time.sleep(0.2)
    return DemoRun.load(record)


def stop_background(shared_root: Path) -> None:
    """End the session's demo if it still runs (the session stopped before it ended)."""
    record = _record(shared_root)
    if record.exists():
        DemoRun.load(record).stop()
