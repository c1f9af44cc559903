"""The Local backend: MLflow's model server on this machine, predictions captured in SQLite
(a file here) or PostgreSQL (a database every task of a team can reach).

uv run python -m backends.local status   # what serves, is it healthy
uv run python -m backends.local stop     # stop the background server
uv run python -m backends.local prune    # delete captures past backend.capture_retention

`prune` reads `backend:` of the project config (`--config`, default config/local.yml);
the server and the monitoring pipeline's labelling prune on their own too (see
`inference.retention`). `--vacuum` also rewrites a store made before stores gave space
back by themselves (it holds the server's writes while it runs: do it when idle).

`backend.database` is a SQLite file (resolved against the working directory) or a
`postgresql://user@host:port/dbname` URL whose password is in the variable
`backend.database_password_variable` names (CAPTURE_DATABASE_PASSWORD), or in libpq's
PGPASSWORD or ~/.pgpass: never in the URL, which Metaflow stores with every run. A run
whose `@backend` steps go to other machines (`--with batch`, `--with kubernetes`) while
captures go to a SQLite file is refused before it starts (`check_remote_steps`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from backends.base import (
    Backend,
    BackendError,
    SettingsError,
    ShadowModel,
    captured_frame,
    load_backend_settings,
    simulate_ground_truth,
)
from backends.local_exposure import (
    DEFAULT_TOKEN_VARIABLE,
    auth_token,
    authorization_header,
    check_exposure,
    server_environment,
)
from backends.local_server import DEFAULT_STATE_DIR, LocalServer, ServerError, ping
from common.settings_loader import SettingValueError, require_positive_integers
from inference.capture_postgres import described, is_postgres_url
from inference.capture_stores import DATABASE_VARIABLE, PASSWORD_VARIABLE
from inference.retention import ENVIRONMENT_VARIABLE as RETENTION_VARIABLE
from inference.retention import Retention

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class LocalSettings:
    """The Local backend's `backend:` settings; an unknown key is refused."""

    module: str | None = None  # The backend selector, read by the pipelines.
    target: str = "http://127.0.0.1:8080/invocations"  # where the server answers
    # Where every prediction is captured: a SQLite file, or a PostgreSQL database
    # (postgresql://user@host:port/dbname) with its password in the variable named next.
    database: str = "penguins.db"
    database_password_variable: str = "CAPTURE_DATABASE_PASSWORD"
    workers: int = 2  # server processes
    max_batch_size: int = 1000  # most rows per request
    state_dir: str = DEFAULT_STATE_DIR  # the server's pid, address and logs
    # How long captured predictions are kept: `days` without ground truth, `labeled_days`
    # with it, at most `rows` (the oldest unlabelled go first); null keeps them for ever.
    capture_retention: Retention = field(default_factory=Retention)
    # Who may call the server and what a request may take (see backends.local_exposure):
    auth_token_variable: str = DEFAULT_TOKEN_VARIABLE  # the variable holding the token
    allow_unauthenticated: bool = False  # serve beyond 127.0.0.1 without a token
    max_request_bytes: int | None = None  # None: 1 KiB a row of max_batch_size, >= 1 MiB
    header_timeout: float = 30.0  # seconds for a request's headers to arrive
    body_timeout: float = 30.0  # seconds for its body, after its headers
    max_connections: int = 256  # open connections per worker

    def __post_init__(self) -> None:
        url = urlparse(self.target)
        if url.scheme != "http" or not url.hostname:
            raise SettingsError(
                f"backend.target: {self.target!r} is not where a local server can answer: "
                "write it as http://<host>:<port>/invocations."
            )
        require_positive_integers(self, "workers", "max_batch_size", "max_connections")
        for name in ("max_request_bytes", "header_timeout", "body_timeout"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise SettingValueError(name, f"must be positive, got {getattr(self, name)!r}.")
        check_database(self.database, self.database_password_variable)
        problem = self.capture_retention.problem()
        if problem is not None:
            raise SettingValueError(f"capture_retention.{problem[0]}", problem[1])


def check_database(database: str, password_variable: str) -> None:
    """SettingsError unless `database` names a SQLite file or a PostgreSQL database
    without a password (Metaflow stores the configuration with every run)."""
    if not database or "${" in database:
        raise SettingsError(
            f"backend.database: {database!r} names no database (an unset ${{VARIABLE}}?): "
            "write a SQLite file (penguins.db) or postgresql://user@host:port/dbname."
        )
    if not is_postgres_url(database):
        return
    try:
        url = urlparse(database)
        url.port  # noqa: B018 - parsing it refuses a port that is not a number
    except ValueError as error:
        raise SettingsError(f"backend.database: {described(database)}: {error}.") from None
    if url.password is not None:
        raise SettingsError(
            f"backend.database: {described(database)} holds a password, which would be "
            f"stored with every run: remove it from the URL and put it in {password_variable} "
            "(backend.database_password_variable), or in PGPASSWORD or ~/.pgpass."
        )
    if not url.hostname or not url.path.strip("/"):
        raise SettingsError(
            f"backend.database: {database!r} must name a host and a database: "
            "postgresql://user@host:port/dbname."
        )


class Local(Backend):
    """Serve with MLflow's scoring server on this machine; capture predictions in SQLite
    or PostgreSQL.

    Settings (config `backend:`, see `LocalSettings`): `target` (invocations URL),
    `database` (capture SQLite file or PostgreSQL URL, its password in
    `database_password_variable`), `workers` (server processes, default 2),
    `max_batch_size` (rows per request, default 1000), `state_dir` (server pid and logs,
    default `.serving`), `capture_retention` (how long captures are kept: see
    `inference.retention`); who may call the server and what a request may take:
    `auth_token_variable`, `allow_unauthenticated`, `max_request_bytes`,
    `header_timeout`, `body_timeout`, `max_connections` (see `backends.local_exposure`).
    """

    serves_where_deployed = True

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(dict(config or {}))
        self.settings = load_backend_settings(LocalSettings, self.config)
        self.target = self.settings.target
        database = self.settings.database
        self.database = database if is_postgres_url(database) else str(Path(database).resolve())
        self.shared_store = is_postgres_url(database)
        self.workers = self.settings.workers
        self.max_batch_size = self.settings.max_batch_size
        self.state_dir = self.settings.state_dir

    def _server(self) -> LocalServer:
        return LocalServer(self.state_dir)

    def _store(self, retention: Retention | None = None):
        from inference.capture_stores import open_store

        return open_store(self.database, retention, self._database_password())

    def _database_password(self) -> str | None:
        """The PostgreSQL password from its variable; None: libpq's PGPASSWORD or ~/.pgpass."""
        return os.environ.get(self.settings.database_password_variable) or None

    def _stored(self) -> bool:
        """Whether the store may hold captures (a SQLite file not made yet holds none)."""
        return self.shared_store or Path(self.database).exists()

    def check_remote_steps(self, steps: list[str]) -> None:
        """Refuse remote `@backend` steps while captures go to a SQLite file here: a
        worker would write its own file, lost with it, and read none of this one's."""
        if self.shared_store or not steps:
            return
        which = f"steps {', '.join(steps)} run" if len(steps) > 1 else f"step {steps[0]} runs"
        raise SettingsError(
            f"backend.database is the SQLite file {self.database}, on this machine, but the "
            f"{which} on other machines (--with batch, --with kubernetes or a scheduler): "
            "captures would stay on the workers and be lost. Set backend.database to a "
            "postgresql:// URL reachable from the workers (see docs/team-setup.md, "
            '"Captures every task can reach").'
        )

    def deployed_version(self) -> str | None:
        state = self._server().state()
        return state.model_version if state and ping(state.url) else None

    def _environment(self, model_version: str) -> dict[str, str]:
        password = self._database_password() if self.shared_store else None
        environment = {
            DATABASE_VARIABLE: self.database,
            **({PASSWORD_VARIABLE: password} if password else {}),
            "SERVING_MODEL_VERSION": str(model_version),
            "SERVING_MAX_BATCH_SIZE": str(self.max_batch_size),
            RETENTION_VARIABLE: self.settings.capture_retention.as_json(),
            **server_environment(self.settings, self._exposed_token()),
        }
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            if name in os.environ:
                environment[name] = os.environ[name]
        return environment

    def _token(self) -> str | None:
        return auth_token(self.settings.auth_token_variable)

    def _exposed_token(self) -> str | None:
        """The token the server will require; BackendError if it would serve beyond this
        machine without one (and the settings do not allow it)."""
        token = self._token()
        check_exposure(
            self.target, token, self.settings.allow_unauthenticated,
            self.settings.auth_token_variable,
        )  # fmt: skip
        return token

    def deployed_shadow_version(self) -> str | None:
        state = self._server().state()
        return state.shadow_version if state and ping(state.url) else None

    def prepare(
        self, model_uri: str, model_version: str, shadow: ShadowModel | None = None
    ) -> None:
        """Download the model (and shadow) while the old server answers (see `LocalServer`)."""
        try:
            self._server().prepare(
                model_uri, str(model_version), self.target, self.workers,
                self._environment(model_version), shadow=shadow,
            )  # fmt: skip
        except ServerError as error:
            raise BackendError(f"Preparing {model_uri} failed: {error}") from None

    def deploy(self, model_uri: str, model_version: str, shadow: ShadowModel | None = None) -> bool:
        """Serve `model_uri` (and `shadow`), replacing what serves without refusing a request.

        The new server is healthy before the old one stops accepting, and the old one
        finishes the requests it accepted (see `backends.local_server`).
        """
        state = self._server().state()
        wanted_shadow = str(shadow.model_version) if shadow else None
        if (
            state is not None
            and (state.model_version, state.shadow_version) == (str(model_version), wanted_shadow)
            and ping(state.url)
        ):
            return False
        try:
            self._server().start(
                model_uri, str(model_version), self.target, self.workers,
                self._environment(model_version), shadow=shadow,
            )  # fmt: skip
        except ServerError as error:
            raise BackendError(f"Deploying {model_uri} to {self.target} failed: {error}") from None
        return True

    def stop(self) -> None:
        """Stop the background server, if one runs."""
        self._server().stop()

    def invoke(self, payload: list[dict[str, Any]], source: str = "online") -> dict[str, Any]:
        """Send rows to the server; with another `source` than "online", its captures of
        them are marked so as soon as they are answered (a server of any version's code
        stores what it answers as "online")."""
        answer = self._post(payload)
        if source != "online":
            ids = [row.get("id") for row in answer.get("predictions", []) if isinstance(row, dict)]
            self._mark_source([str(id_) for id_ in ids if id_], source)
        return answer

    def _mark_source(self, ids: list[str], source: str) -> None:
        with self._capture_errors("Marking the captures"):
            store = self._store()
            try:
                store.mark_source(ids, source)
            finally:
                store.close()

    def _post(self, payload: list[dict[str, Any]]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.target,
            data=json.dumps({"inputs": payload}).encode(),
            headers={"Content-Type": "application/json", **authorization_header(self._token())},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            if error.code == 401:
                detail += (
                    f" Set {self.settings.auth_token_variable} to the token the server was "
                    "deployed with."
                )
            raise BackendError(f"{self.target} answered {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise BackendError(
                f"No model server at {self.target} ({getattr(error, 'reason', error)}). "
                "Deploy one: uv run src/pipelines/deployment.py run"
            ) from None

    def save(
        self, model_input: pd.DataFrame, model_output: pd.DataFrame, source: str = "online"
    ) -> None:
        from inference.capture import prediction_ids

        ids = (
            model_output["id"].tolist()
            if "id" in model_output
            else prediction_ids(len(model_output))
        )
        # One JSON object per row, the whole frame at once: 5x cheaper than a dict and a
        # json.dumps per row at 100,000 rows. 15 significant digits (pandas' most) keep
        # any measurement; missing values are null, as the server captures them.
        encoded = (
            model_input.to_json(orient="records", lines=True, double_precision=15).splitlines()
            if len(model_input)
            else []
        )
        store = self._store()
        try:
            store.save_encoded(
                ids,
                encoded,
                model_output["prediction"].tolist(),
                model_output["confidence"].tolist(),
                model_output["model_version"].iloc[0] if "model_version" in model_output else None,
                source=source,
            )
        finally:
            store.close()

    def load(
        self, limit: int = 100, labeled_only: bool = False, model_version: str | None = None
    ) -> pd.DataFrame | None:
        if not self._stored():
            return None
        store = self._store()
        try:
            rows = store.recent(limit, labeled_only=labeled_only, model_version=model_version)
        finally:
            store.close()
        return captured_frame(rows) if rows else None

    def label(self, ground_truth_quality: float = 0.8) -> int:
        """Simulate ground truth for the unlabelled predictions, then delete what
        `backend.capture_retention` no longer keeps (the server does too, when it runs)."""
        with self._capture_errors("Labelling"):
            store = self._store()
            try:
                unlabeled = store.unlabeled()
                truth = unlabeled and simulate_ground_truth(
                    unlabeled, store.classes(), ground_truth_quality
                )
                labelled = store.label(truth) if truth else 0
            finally:
                store.close()
            self.prune()
        return labelled

    def label_by_id(self, ground_truth: dict[str, str]) -> int:
        with self._capture_errors("Labelling"):
            store = self._store()
            try:
                return store.label(ground_truth)
            finally:
                store.close()

    def prune(self, rewrite: bool = False) -> int:
        """Delete the captures `backend.capture_retention` no longer keeps; how many.

        `rewrite`: then rewrite the store without its free pages, which a store made
        before stores gave space back by themselves needs once (it holds the server's
        writes meanwhile).
        """
        if not self._stored():
            return 0
        with self._capture_errors("Deleting old captures"):
            store = self._store(self.settings.capture_retention)
            try:
                deleted = store.prune()
                if rewrite:
                    store.rewrite()
            finally:
                store.close()
        return deleted

    @contextlib.contextmanager
    def _capture_errors(self, what: str) -> Iterator[None]:
        """A capture store's failure (a full disk, a lock held too long) as BackendError."""
        from inference.capture import CaptureError

        try:
            yield
        except CaptureError as error:
            raise BackendError(f"{what} failed: {error}") from None


def main(argv: list[str]) -> int:
    """`status` or `stop` the background server (state in .serving/ or $SERVING_STATE_DIR),
    or `prune` the captures."""
    server = LocalServer(os.environ.get("SERVING_STATE_DIR", DEFAULT_STATE_DIR))
    command = argv[0] if argv else "status"
    if command == "prune":
        return prune_command(argv[1:])
    if command == "stop":
        state = server.stop()
        print(f"Stopped the server of model version {state.model_version}." if state else
              "No server was running.")  # fmt: skip
        return 0
    if command == "status":
        state = server.state()
        if state is None:
            print("No server is running.")
            return 1
        health = "healthy" if ping(state.url) else "not answering"
        shadow = f", shadow version {state.shadow_version}" if state.shadow_version else ""
        print(
            f"Model version {state.model_version}{shadow} at {state.url} (pid {state.pid}), "
            f"{health}."
        )
        return 0
    print("Usage: python -m backends.local [status|stop|prune]", file=sys.stderr)
    return 2


def prune_command(arguments: list[str]) -> int:
    """`prune [--config PATH] [--vacuum]`: delete captures past `backend.capture_retention`."""
    import argparse

    from common.config import load_project_configuration
    from common.settings import ConfigurationError

    parser = argparse.ArgumentParser(prog="python -m backends.local prune")
    parser.add_argument("--config", default="config/local.yml", help="the project config")
    parser.add_argument(
        "--vacuum",
        action="store_true",
        help="then rewrite the store without its free pages: once, for a store made before "
        "stores gave space back by themselves; it holds the server's writes while it runs",
    )
    options = parser.parse_args(arguments)
    try:
        backend = Local(load_project_configuration(options.config).get("backend"))
        deleted = backend.prune(rewrite=options.vacuum)
    except (BackendError, ConfigurationError, OSError) as error:
        print(f"{options.config}: {error}", file=sys.stderr)
        return 1
    print(
        f"Deleted {deleted} captured predictions past backend.capture_retention from "
        f"{backend.database}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
