"""The MLflow UI as a user opens it: `mlflow ui` on 127.0.0.1, read by headless Chromium.

The UI is a React app: the page the server sends is an empty shell, so the runs it
lists are only in the DOM once its scripts have fetched them (`dump_page`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.ports import free_port

START_TIMEOUT = 180  # seconds; `mlflow ui` imports for ~20 s on a busy machine


@contextlib.contextmanager
def mlflow_ui(tracking_uri: str, directory: Path) -> Iterator[str]:
    """`mlflow ui` (as `just mlflow` starts it) on `tracking_uri`; yield its address.

    One worker and no job runner, in a process group of its own that is stopped whole
    at the end: MLflow 3.17's job consumers otherwise outlive the server.
    """
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log_path = directory / "mlflow-ui.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process, log_path)
        yield url
    finally:
        _stop_group(process.pid)


def _wait_until_healthy(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2):
            return
        time.sleep(0.5)
    pytest.fail(f"mlflow ui did not answer within {START_TIMEOUT} s")


def _stop_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def dump_page(chromium: str, url: str, profile: Path, timeout: float = 240) -> str:
    """The DOM of `url` after its scripts ran (20 s of virtual time), in a fresh profile
    (a fresh user's settings: nothing remembered from an earlier visit)."""
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
        "--dump-dom", url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"chromium exited {result.returncode}:\n{result.stderr[-3000:]}"
    assert "<body" in result.stdout, f"chromium dumped no DOM:\n{result.stderr[-3000:]}"
    return result.stdout
