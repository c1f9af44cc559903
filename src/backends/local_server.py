"""Run `mlflow models serve` in the background, one server per state directory.

The server's process id, model version and address live in `<state dir>/server.json`
so that a later deployment can replace it and `stop` can end it (`python -m
backends.local status|stop` from the command line).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_STATE_DIR = ".serving"


class ServerError(RuntimeError):
    """The model server could not be started, or did not become healthy."""


@dataclass
class ServerState:
    pid: int
    model_uri: str
    model_version: str
    url: str
    log: str
    started_at: float


def ping(url: str, timeout: float = 2.0) -> bool:
    """True if the server behind the invocations `url` answers its health check."""
    parsed = urlparse(url)
    try:
        with urllib.request.urlopen(
            f"{parsed.scheme}://{parsed.netloc}/ping", timeout=timeout
        ) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalServer:
    """Start, find and stop the background model server of one state directory."""

    def __init__(self, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> None:
        self.state_dir = Path(state_dir)
        self.state_file = self.state_dir / "server.json"

    def state(self) -> ServerState | None:
        """The recorded server, if its process still runs."""
        try:
            state = ServerState(**json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return state if _alive(state.pid) else None

    def start(
        self,
        model_uri: str,
        model_version: str,
        url: str,
        workers: int,
        environment: dict[str, str],
        timeout: float = 120.0,
    ) -> ServerState:
        """Stop any server started here, start one for `model_uri`, wait until healthy."""
        self.stop()
        parsed = urlparse(url)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.state_dir / f"server-{model_version}.log"
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            **environment,
            # `mlflow models serve --env-manager local` runs uvicorn through the shell.
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        command = [
            sys.executable, "-m", "mlflow", "models", "serve",
            "--model-uri", model_uri,
            "--host", parsed.hostname or "127.0.0.1",
            "--port", str(parsed.port or 80),
            "--workers", str(workers),
            "--env-manager", "local",
        ]  # fmt: skip
        with open(log, "ab") as output:
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Its own process group: stop() ends uvicorn too.
            )
        state = ServerState(process.pid, model_uri, str(model_version), url, str(log), time.time())
        self.state_file.write_text(json.dumps(asdict(state)))

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                raise ServerError(
                    f"The model server exited with code {process.returncode} before "
                    f"answering. Last lines of {log}:\n{_tail(log)}"
                )
            if ping(url):
                return state
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"The model server did not answer within {timeout:.0f} s; see {log}.")

    def stop(self, timeout: float = 15.0) -> ServerState | None:
        """End the recorded server and its workers; return what was stopped."""
        state = self.state()
        if state is not None:
            _signal_group(state.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(state.pid) and time.monotonic() < deadline:
                _reap(state.pid)
                time.sleep(0.1)
            _signal_group(state.pid, signal.SIGKILL)
            _reap(state.pid)
        self.state_file.unlink(missing_ok=True)
        return state


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status of a server we started, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
