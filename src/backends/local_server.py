"""Run MLflow's model server in the background, one server per state directory.

The server's process id, model version (and shadow's) and address live in
`<state dir>/server.json` so that a later deployment can replace it and `stop` can end
it (`python -m backends.local status|stop` from the command line).

The server is what `mlflow models serve --env-manager local` runs (uvicorn with
MLflow's scoring app), started by `backends.local_launcher` without that CLI. A
version replaces another without refusing or dropping a request:

1. The new model (and shadow) is downloaded while the old server answers; a download
   that fails changes nothing. `prepare` does this ahead, from a process that has
   MLflow imported anyway (the deployment pipeline's `start` step), and records it in
   `<state dir>/prepared.json`: `start` then imports no MLflow at all.
2. The new server gets the old one's listening socket (a duplicate of its descriptor,
   over the unix socket the old server offers it on) or, when nothing serves, a socket
   bound here. Both servers accept from the same queue meanwhile.
3. The new server reports ready once every worker has loaded the model, answered a
   health check and accepts. A server that fails is stopped; the old one never noticed.
4. Then the old server gets SIGTERM: its workers stop accepting, finish what they
   accepted and exit. Connections still queued are the new server's.

Downloaded models live in `<state dir>/models/`; only those of the server are kept.
The server inherits an allow-list of the environment that starts it (`server_may_inherit`):
no cloud keys, tracking credentials or tokens reach a process that answers the network.
The state directory is private, its files written whole, the logs rotated, and a
recorded process is only signalled while it is still the server (`backends.local_state`).
Each server sums its workers' Prometheus metrics in a directory of its own
(`<state dir>/metrics-*`, 0700, `PROMETHEUS_MULTIPROC_DIR`): a new version's counts
start at zero, and the directory goes when its server stops.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from backends.base import ShadowModel
from backends.local_state import (
    append_private,
    is_recorded_process,
    private_directory,
    process_start,
    rotating_log,
    write_atomically,
)
from common.process_status import end_group
from inference.metrics import MULTIPROCESS_DIRECTORY_VARIABLE

DEFAULT_STATE_DIR = ".serving"
LAUNCHER = "backends.local_launcher"
SHADOW_PATH_VARIABLE = "SERVING_SHADOW_MODEL_PATH"
SHADOW_VERSION_VARIABLE = "SERVING_SHADOW_VERSION"
# Connections waiting for a worker; uvicorn's default.
BACKLOG = 2048
# A unix socket's path must fit in sockaddr_un (108 bytes on Linux, 104 on macOS).
MAX_UNIX_PATH = 100


# What the model server may inherit of the environment that starts it: what Python, the
# model's libraries (Keras, JAX, the BLAS threads) and the serving settings read. Nothing
# else reaches a process that answers the network: not the cloud keys, tracking
# passwords or tokens a pipeline runs with.
SERVER_VARIABLES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "VIRTUAL_ENV", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "KERAS_BACKEND",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "TF_CPP_MIN_LOG_LEVEL", "XDG_CACHE_HOME", "SYSTEMROOT",
})  # fmt: skip
SERVER_VARIABLE_PREFIXES = (
    "LC_", "PYTHON", "KERAS_", "JAX_", "XLA_", "SERVING_", "MLFLOW_SCORING_SERVER_",
)  # fmt: skip
# Where a model is downloaded from: the pipeline's business, not the server's.
DOWNLOAD_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def server_may_inherit(name: str) -> bool:
    """Whether the model server gets variable `name` of the environment that starts it.

    A shadow is only what the deployment asks for (`shadow`, or the `environment` it
    passes), never one left in the caller's environment.
    """
    if name in (SHADOW_PATH_VARIABLE, SHADOW_VERSION_VARIABLE):
        return False
    return name in SERVER_VARIABLES or name.startswith(SERVER_VARIABLE_PREFIXES)


class ServerError(RuntimeError):
    """The model server could not be started, or did not become healthy."""


@dataclass
class Prepared:
    """Downloaded models and what serves them (`<state dir>/prepared.json`)."""

    model_uri: str
    url: str
    workers: int
    path: str
    environment: dict[str, str]
    seconds: float  # how long the downloads took
    shadow_uri: str | None = None
    shadow_version: str | None = None
    shadow_path: str | None = None


@dataclass
class ServerState:
    pid: int
    model_uri: str
    model_version: str
    url: str
    log: str
    started_at: float
    shadow_uri: str | None = None
    shadow_version: str | None = None
    # Where the server offers its listening socket to the next one; None for a server
    # started before handoffs existed (it is stopped before its successor binds).
    handoff: str | None = None
    model_paths: tuple[str, ...] = ()
    # When the process started (`local_state.process_start`): a later process that got
    # the same id is not the server. None for a server recorded before it was kept.
    process_start: int | None = None
    # Where its workers' metrics are summed (`inference.metrics`); None before metrics.
    metrics_dir: str | None = None


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


def _address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 80


def bind_listener(url: str) -> socket.socket:
    """A socket listening where `url` points (OSError if it cannot be had)."""
    host, port = _address(url)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def receive_listener(handoff: str, timeout: float = 10.0) -> socket.socket:
    """The listening socket the server at unix socket `handoff` offers (OSError if none)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(handoff)
        _, descriptors, _, _ = socket.recv_fds(connection, 64, 1)
    if not descriptors:
        raise OSError(f"{handoff} sent no socket")
    return socket.socket(fileno=descriptors[0])


class LocalServer:
    """Start, find, replace and stop the background model server of one state directory."""

    def __init__(self, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> None:
        self.state_dir = Path(state_dir)
        self.state_file = self.state_dir / "server.json"
        self.prepared_file = self.state_dir / "prepared.json"
        self._log_writer: subprocess.Popen | None = None  # writes the launched server's log

    def state(self) -> ServerState | None:
        """The recorded server, if its process still runs."""
        try:
            recorded = json.loads(self.state_file.read_text())
            state = ServerState(
                **{**recorded, "model_paths": tuple(recorded.get("model_paths", ()))}
            )
        except (FileNotFoundError, ValueError, TypeError):
            return None
        alive = _alive(state.pid) and is_recorded_process(state.pid, state.process_start)
        return state if alive else None

    def prepare(
        self,
        model_uri: str,
        model_version: str,
        url: str,
        workers: int,
        environment: dict[str, str],
        shadow: ShadowModel | None = None,
    ) -> Prepared:
        """Download `model_uri` (and the `shadow`'s), touching no running server.

        `start` of the same models then uses them: a pipeline can prepare in a step
        that has MLflow imported already, and start the server from one that has not.
        `environment`'s MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI) say where to
        download a `models:/` URI from.
        """
        private_directory(self.state_dir)
        log = self.state_dir / f"server-{model_version}.log"
        began = time.monotonic()
        model_path = self._download(model_uri, environment, log)
        shadow_path = None
        if shadow is not None:
            try:
                shadow_path = self._download(shadow.model_uri, environment, log, "shadow model")
            except ServerError:
                shutil.rmtree(self._download_dir(model_path), ignore_errors=True)
                raise

        from mlflow.pyfunc.scoring_server import get_cmd

        # Only the environment: what MLflow adds for its app (model path, request timeout).
        _, server_env = get_cmd(str(model_path), None, None, None, workers)
        prepared = Prepared(
            model_uri=model_uri,
            url=url,
            workers=workers,
            path=str(model_path),
            environment={k: v for k, v in server_env.items() if os.environ.get(k) != v},
            seconds=time.monotonic() - began,
            shadow_uri=shadow.model_uri if shadow else None,
            shadow_version=str(shadow.model_version) if shadow else None,
            shadow_path=str(shadow_path) if shadow_path else None,
        )
        write_atomically(self.prepared_file, json.dumps(asdict(prepared)))
        return prepared

    def _prepared(
        self, model_uri: str, url: str, workers: int, shadow: ShadowModel | None
    ) -> Prepared | None:
        try:
            prepared = Prepared(**json.loads(self.prepared_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        wanted = (model_uri, url, workers, shadow.model_uri if shadow else None)
        found = (prepared.model_uri, prepared.url, prepared.workers, prepared.shadow_uri)
        paths = [prepared.path] + ([prepared.shadow_path] if prepared.shadow_path else [])
        return prepared if wanted == found and all(Path(p).is_dir() for p in paths) else None

    def start(
        self,
        model_uri: str,
        model_version: str,
        url: str,
        workers: int,
        environment: dict[str, str],
        timeout: float = 120.0,
        shadow: ShadowModel | None = None,
    ) -> ServerState:
        """Serve `model_uri` (with `shadow`) at `url`, replacing the server started here.

        Returns once the new server is healthy and the old one has finished what it
        had accepted. A model that cannot be downloaded, or a server that does not
        come up, leaves the old one serving as it was.
        """
        private_directory(self.state_dir)
        prepared = self._prepared(model_uri, url, workers, shadow)
        if prepared is None:
            prepared = self.prepare(model_uri, model_version, url, workers, environment, shadow)
        log = self.state_dir / f"server-{model_version}.log"
        old = self.state()
        began = time.monotonic()
        listener = self._listener(old, url, log)
        handoff = self._handoff_path()
        _note(log, _starting_note(model_uri, prepared, old))
        metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=self.state_dir.resolve())  # 0700
        environment = {**environment, MULTIPROCESS_DIRECTORY_VARIABLE: metrics_dir}
        try:
            process = self._start_until_ready(
                listener, prepared, environment, workers, handoff, log, timeout
            )
        except ServerError:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            raise
        ready = time.monotonic()
        state = ServerState(
            process.pid, model_uri, str(model_version), url, str(log), time.time(),
            prepared.shadow_uri, prepared.shadow_version, str(handoff), _model_paths(prepared),
            process_start(process.pid), metrics_dir,
        )  # fmt: skip
        write_atomically(self.state_file, json.dumps(asdict(state)))
        if old is not None and old.pid != process.pid:
            end_group(old.pid, grace=15.0)
            _remove_handoff(old.handoff, self.state_dir)
        # bench/deployment.py reads this line: keep its wording.
        _note(log, _ready_note(ready - began, time.monotonic() - ready if old else None))
        self._forget_models(keep=[Path(p) for p in state.model_paths])
        self._forget_metrics(keep=metrics_dir)
        return state

    def _start_until_ready(
        self,
        listener: socket.socket,
        prepared: Prepared,
        environment: dict[str, str],
        workers: int,
        handoff: Path,
        log: Path,
        timeout: float,
    ) -> subprocess.Popen:
        """Launch the server on `listener` and wait until it is ready; a server that is
        not is stopped, and its downloads and handoff socket removed (ServerError)."""
        process, ready_read = self._launch(
            listener, prepared, environment, workers, handoff, log, timeout
        )
        self.prepared_file.unlink(missing_ok=True)
        try:
            self._wait_until_ready(process, ready_read, timeout, log)
        except ServerError:
            end_group(process.pid, grace=15.0)
            for path in _model_paths(prepared):
                shutil.rmtree(self._download_dir(Path(path)), ignore_errors=True)
            _remove_handoff(str(handoff), self.state_dir)
            raise
        finally:
            os.close(ready_read)
        return process

    def _launch(
        self,
        listener: socket.socket,
        prepared: Prepared,
        environment: dict[str, str],
        workers: int,
        handoff: Path,
        log: Path,
        timeout: float,
    ) -> tuple[subprocess.Popen, int]:
        """Start `backends.local_launcher` on `listener`; the process and its readiness pipe.

        `listener` is closed here: the server has its own descriptor of it.
        """
        ready_read, ready_write = os.pipe()
        command = [
            sys.executable, "-m", LAUNCHER, "--listen-fd", str(listener.fileno()),
            "--ready-fd", str(ready_write), "--workers", str(workers), "--handoff", str(handoff),
            "--startup-timeout", str(timeout),
        ]  # fmt: skip
        inherited = {name: value for name, value in os.environ.items() if server_may_inherit(name)}
        try:
            with rotating_log(log, inherited) as (output, self._log_writer):
                process = subprocess.Popen(
                    command,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self._server_environment(prepared, environment),
                    pass_fds=(listener.fileno(), ready_write),
                    start_new_session=True,  # Its own process group: stop() ends the workers too.
                )
        except OSError as error:
            os.close(ready_read)
            raise ServerError(f"Could not start the model server ({command[0]}): {error}") from None
        finally:
            listener.close()
            os.close(ready_write)
        return process, ready_read

    def _server_environment(self, prepared: Prepared, environment: dict[str, str]) -> dict:
        """What the server runs with: the part of this process's environment it may
        inherit (`server_may_inherit`), MLflow's app settings, and the caller's
        `environment` but for where the model was downloaded from."""
        bin_dir = str(Path(sys.executable).parent)
        inherited = {name: value for name, value in os.environ.items() if server_may_inherit(name)}
        # The server reads its downloaded copy: it needs no tracking server, or its URI.
        explicit = {
            name: value for name, value in environment.items() if name not in DOWNLOAD_VARIABLES
        }
        env = {
            **inherited,
            **prepared.environment,
            **explicit,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        if prepared.shadow_path:
            env[SHADOW_PATH_VARIABLE] = prepared.shadow_path
            env[SHADOW_VERSION_VARIABLE] = str(prepared.shadow_version)
        return env

    def _listener(self, old: ServerState | None, url: str, log: Path) -> socket.socket:
        """The socket the new server will accept on: the old server's, or a new one."""
        same_address = old is not None and _address(old.url) == _address(url)
        if same_address and old.handoff:
            try:
                return receive_listener(old.handoff)
            except OSError as error:
                _note(log, f"Could not take over pid {old.pid}'s socket ({error}); binding.")
        try:
            return bind_listener(url)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise ServerError(f"Cannot listen at {url}: {error}") from None
            if not same_address:
                host, port = _address(url)
                raise ServerError(
                    f"Port {port} of {host} is in use by another process, not by a model "
                    f"server of {self.state_dir}: stop that process, or set backend.target "
                    "to a free port."
                ) from None
        # A server that cannot hand its socket on (started by an earlier version of this
        # module): it has to stop before its port can be bound again.
        _note(log, f"Stopping pid {old.pid} first: it cannot hand over its socket.")
        self.stop()
        try:
            return bind_listener(url)
        except OSError as error:
            raise ServerError(f"Cannot listen at {url}: {error}") from None

    def _handoff_path(self) -> Path:
        name = f"handoff-{uuid.uuid4().hex[:12]}.sock"
        path = self.state_dir.resolve() / name
        if len(str(path).encode()) > MAX_UNIX_PATH:
            path = Path(tempfile.mkdtemp(prefix="serving-")) / name
        return path

    def _wait_until_ready(
        self, process: subprocess.Popen, ready: int, timeout: float, log: Path
    ) -> None:
        """Return once the server says it is ready; ServerError if it fails or times out."""
        deadline = time.monotonic() + timeout
        said = b""
        while time.monotonic() < deadline:
            readable, _, _ = select.select([ready], [], [], 0.5)
            if readable:
                said = os.read(ready, 64)
                if said.startswith(b"ready"):
                    return
                break  # it reported a failure, or closed the pipe: it will not serve
            if process.poll() is not None:
                break
        else:
            raise ServerError(f"The model server was not ready within {timeout:.0f} s; see {log}.")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
            if self._log_writer is not None:  # what the server said last, in its log
                self._log_writer.wait(timeout=5)
        code = process.returncode
        raise ServerError(
            f"The model server {'exited with code ' + str(code) if code is not None else 'failed'}"
            f" before serving; the server that was serving still does. Last lines of {log}:\n"
            f"{_tail(log)}"
        )

    def _download(
        self, model_uri: str, environment: dict[str, str], log: Path, what: str = "model"
    ) -> Path:
        """The model's files, in a new directory under `<state dir>/models/`."""
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        from common.registry import quiet_downloads
        from common.secrets import redact

        models = self.state_dir / "models"
        models.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix="model-", dir=models))
        tracking_uri = environment.get("MLFLOW_TRACKING_URI") or None
        try:
            with quiet_downloads():  # a progress bar per file would fill the pipeline's log
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=model_uri,
                    dst_path=str(target),
                    tracking_uri=tracking_uri,
                    registry_uri=environment.get("MLFLOW_REGISTRY_URI") or tracking_uri,
                )
        except (MlflowException, OSError) as error:
            shutil.rmtree(target, ignore_errors=True)
            reason = redact(str(error))
            _note(log, f"Could not download {model_uri}: {reason}")
            raise ServerError(f"Could not download the {what} {model_uri}: {reason}") from None
        return Path(local)

    def _download_dir(self, path: Path) -> Path:
        """The directory under `<state dir>/models/` that `_download` put `path` in."""
        models = (self.state_dir / "models").resolve()
        return models / Path(path).resolve().relative_to(models).parts[0]

    def _forget_models(self, keep: list[Path]) -> None:
        """Delete the downloaded models that no server uses any more."""
        kept = {k for path in keep for k in (path, *path.parents)}
        for path in (self.state_dir / "models").iterdir():
            if path not in kept:
                shutil.rmtree(path, ignore_errors=True)

    def _forget_metrics(self, keep: str | None = None) -> None:
        """Delete the metrics directories of servers that no longer run (all but `keep`)."""
        for path in self.state_dir.resolve().glob("metrics-*"):
            if str(path) != keep:
                shutil.rmtree(path, ignore_errors=True)

    def stop(self, timeout: float = 15.0) -> ServerState | None:
        """End the recorded server and its workers; return what was stopped."""
        state = self.state()
        if state is not None:
            end_group(state.pid, grace=timeout)
            _remove_handoff(state.handoff, self.state_dir)
        self.state_file.unlink(missing_ok=True)
        if self.state_dir.is_dir():
            self._forget_metrics()
        return state


def _remove_handoff(handoff: str | None, state_dir: Path) -> None:
    """Delete a server's handoff socket (and its directory, when it is not `state_dir`)."""
    if not handoff:
        return
    path = Path(handoff)
    path.unlink(missing_ok=True)
    if path.parent.resolve() != state_dir.resolve():
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def _note(log: Path, line: str) -> None:
    append_private(log, line + "\n")


def _model_paths(prepared: Prepared) -> tuple[str, ...]:
    """The downloaded model's directory, and the shadow's if there is one."""
    return tuple(path for path in (prepared.path, prepared.shadow_path) if path)


def _starting_note(model_uri: str, prepared: Prepared, old: ServerState | None) -> str:
    shadow = f" and shadow {prepared.shadow_uri}" if prepared.shadow_uri else ""
    beside = f"pid {old.pid}" if old else "none"
    return (
        f"Downloaded {model_uri}{shadow} in {prepared.seconds:.1f} s; "
        f"starting the server beside {beside}."
    )


def _ready_note(starting: float, stopping_old: float | None) -> str:
    """How long the new server took to be ready, and the old one to finish and stop."""
    return f"Ready {starting:.1f} s after starting; " + (
        f"the previous server finished and stopped in {stopping_old:.2f} s."
        if stopping_old is not None
        else "nothing served before."
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
