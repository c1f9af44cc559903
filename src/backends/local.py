"""The Local backend: MLflow's model server on this machine, predictions captured in SQLite.

uv run python -m backends.local status   # what serves, is it healthy
uv run python -m backends.local stop     # stop the background server
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
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
from backends.local_server import DEFAULT_STATE_DIR, LocalServer, ServerError, ping
from common.settings_loader import require_positive_integers

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class LocalSettings:
    """The Local backend's `backend:` settings; an unknown key is refused."""

    module: str | None = None  # The backend selector, read by the pipelines.
    target: str = "http://127.0.0.1:8080/invocations"  # where the server answers
    database: str = "penguins.db"  # the SQLite file every prediction is captured in
    workers: int = 2  # server processes
    max_batch_size: int = 1000  # most rows per request
    state_dir: str = DEFAULT_STATE_DIR  # the server's pid, address and logs

    def __post_init__(self) -> None:
        url = urlparse(self.target)
        if url.scheme != "http" or not url.hostname:
            raise SettingsError(
                f"backend.target: {self.target!r} is not where a local server can answer: "
                "write it as http://<host>:<port>/invocations."
            )
        require_positive_integers(self, "workers", "max_batch_size")
        if not self.database:
            raise SettingsError("backend.database: must name a SQLite file, e.g. penguins.db.")


class Local(Backend):
    """Serve with MLflow's scoring server on this machine; capture predictions in SQLite.

    Settings (config `backend:`, see `LocalSettings`): `target` (invocations URL),
    `database` (capture SQLite file), `workers` (server processes, default 2),
    `max_batch_size` (rows per request, default 1000), `state_dir` (server pid and logs,
    default `.serving`).
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(dict(config or {}))
        self.settings = load_backend_settings(LocalSettings, self.config)
        self.target = self.settings.target
        self.database = str(Path(self.settings.database).resolve())
        self.workers = self.settings.workers
        self.max_batch_size = self.settings.max_batch_size
        self.state_dir = self.settings.state_dir

    def _server(self) -> LocalServer:
        return LocalServer(self.state_dir)

    def _store(self):
        from inference.capture import CaptureStore

        return CaptureStore(self.database)

    def deployed_version(self) -> str | None:
        state = self._server().state()
        return state.model_version if state and ping(state.url) else None

    def _environment(self, model_version: str) -> dict[str, str]:
        environment = {
            "SERVING_CAPTURE_DATABASE": self.database,
            "SERVING_MODEL_VERSION": str(model_version),
            "SERVING_MAX_BATCH_SIZE": str(self.max_batch_size),
        }
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            if name in os.environ:
                environment[name] = os.environ[name]
        return environment

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

    def invoke(self, payload: list[dict[str, Any]]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.target,
            data=json.dumps({"inputs": payload}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
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

    def load(self, limit: int = 100, labeled_only: bool = False) -> pd.DataFrame | None:
        if not Path(self.database).exists():
            return None
        store = self._store()
        try:
            rows = store.recent(limit, labeled_only=labeled_only)
        finally:
            store.close()
        return captured_frame(rows) if rows else None

    def label(self, ground_truth_quality: float = 0.8) -> int:
        store = self._store()
        try:
            unlabeled = store.unlabeled()
            if not unlabeled:
                return 0
            classes = store.classes()
            return store.label(simulate_ground_truth(unlabeled, classes, ground_truth_quality))
        finally:
            store.close()

    def label_by_id(self, ground_truth: dict[str, str]) -> int:
        store = self._store()
        try:
            return store.label(ground_truth)
        finally:
            store.close()


def main(argv: list[str]) -> int:
    """`status` or `stop` the background server (state in .serving/ or $SERVING_STATE_DIR)."""
    server = LocalServer(os.environ.get("SERVING_STATE_DIR", DEFAULT_STATE_DIR))
    command = argv[0] if argv else "status"
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
    print("Usage: python -m backends.local [status|stop]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
