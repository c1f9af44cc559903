"""Run MLflow's model server in the background, one server per state directory.

The server's process id, model version and address live in `<state dir>/server.json`
so that a later deployment can replace it and `stop` can end it (`python -m
backends.local status|stop` from the command line).

The server is what `mlflow models serve --env-manager local` runs (uvicorn with
MLflow's scoring app, built by MLflow's own `get_cmd`), started without that CLI in
between: the model is downloaded first, while the old server still answers, then the
old server stops and uvicorn starts on the downloaded copy. The CLI process only
imported MLflow's whole command line (the slowest import of a deployment) to do that
download. `prepare` downloads ahead, from a process that has MLflow imported anyway
(the deployment pipeline's `start` step), and records the command in
`<state dir>/prepared.json`: `start` then imports no MLflow at all. Downloaded models
live in `<state dir>/models/`; only the one serving is kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
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
class Prepared:
    """A downloaded model and the command that serves it (`<state dir>/prepared.json`)."""

    model_uri: str
    url: str
    workers: int
    path: str
    command: list[str]
    environment: dict[str, str]
    seconds: float  # how long the download took


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
        self.prepared_file = self.state_dir / "prepared.json"

    def state(self) -> ServerState | None:
        """The recorded server, if its process still runs."""
        try:
            state = ServerState(**json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return state if _alive(state.pid) else None

    def prepare(
        self,
        model_uri: str,
        model_version: str,
        url: str,
        workers: int,
        environment: dict[str, str],
    ) -> Prepared:
        """Download `model_uri` and build the server's command, touching no running server.

        `start` of the same `model_uri` then uses them: a pipeline can prepare in a step
        that has MLflow imported already, and start the server from one that has not.
        `environment`'s MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI) say where to
        download a `models:/` URI from.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.state_dir / f"server-{model_version}.log"
        began = time.monotonic()
        model_path = self._download(model_uri, environment, log)

        from mlflow.pyfunc.scoring_server import get_cmd

        parsed = urlparse(url)
        command, server_env = get_cmd(
            str(model_path), parsed.port or 80, parsed.hostname or "127.0.0.1", None, workers
        )
        program, *arguments = shlex.split(command)
        prepared = Prepared(
            model_uri=model_uri,
            url=url,
            workers=workers,
            path=str(model_path),
            command=[sys.executable, "-m", program, *arguments],
            # What MLflow adds to the environment (the model's path, the request timeout).
            environment={k: v for k, v in server_env.items() if os.environ.get(k) != v},
            seconds=time.monotonic() - began,
        )
        self.prepared_file.write_text(json.dumps(asdict(prepared)))
        return prepared

    def _prepared(self, model_uri: str, url: str, workers: int) -> Prepared | None:
        try:
            prepared = Prepared(**json.loads(self.prepared_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        same = (prepared.model_uri, prepared.url, prepared.workers) == (model_uri, url, workers)
        return prepared if same and Path(prepared.path).is_dir() else None

    def start(
        self,
        model_uri: str,
        model_version: str,
        url: str,
        workers: int,
        environment: dict[str, str],
        timeout: float = 120.0,
    ) -> ServerState:
        """Stop any server started here, serve `model_uri`, wait until healthy.

        The model is downloaded first, unless `prepare` did it, while the old server
        still answers: a model that cannot be downloaded leaves the old one serving.
        """
        prepared = self._prepared(model_uri, url, workers)
        if prepared is None:
            prepared = self.prepare(model_uri, model_version, url, workers, environment)
        log = self.state_dir / f"server-{model_version}.log"
        stopping = time.monotonic()
        self.stop()
        stopped = time.monotonic()
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            **prepared.environment,
            **environment,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        with open(log, "ab") as output:
            output.write(
                f"Downloaded {model_uri} in {prepared.seconds:.1f} s; stopped the previous "
                f"server in {stopped - stopping:.1f} s; starting uvicorn.\n".encode()
            )
            output.flush()
            process = subprocess.Popen(
                prepared.command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Its own process group: stop() ends the workers too.
            )
        self.prepared_file.unlink(missing_ok=True)
        state = ServerState(process.pid, model_uri, str(model_version), url, str(log), time.time())
        self.state_file.write_text(json.dumps(asdict(state)))

        model_path = Path(prepared.path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                shutil.rmtree(model_path, ignore_errors=True)
                raise ServerError(
                    f"The model server exited with code {process.returncode} before "
                    f"answering. Last lines of {log}:\n{_tail(log)}"
                )
            if ping(url):
                self._forget_models(keep=model_path)
                return state
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"The model server did not answer within {timeout:.0f} s; see {log}.")

    def _download(self, model_uri: str, environment: dict[str, str], log: Path) -> Path:
        """The model's files, in a new directory under `<state dir>/models/`."""
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        models = self.state_dir / "models"
        models.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix="model-", dir=models))
        tracking_uri = environment.get("MLFLOW_TRACKING_URI") or None
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri,
                dst_path=str(target),
                tracking_uri=tracking_uri,
                registry_uri=environment.get("MLFLOW_REGISTRY_URI") or tracking_uri,
            )
        except (MlflowException, OSError) as error:
            shutil.rmtree(target, ignore_errors=True)
            with open(log, "a") as output:
                output.write(f"Could not download {model_uri}: {error}\n")
            raise ServerError(f"Could not download the model {model_uri}: {error}") from None
        return Path(local)

    def _forget_models(self, keep: Path) -> None:
        """Delete the downloaded models that no server uses any more."""
        for path in (self.state_dir / "models").iterdir():
            if path not in (keep, *keep.parents):
                shutil.rmtree(path, ignore_errors=True)

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
