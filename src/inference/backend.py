"""Backends: where a model is deployed, how it is invoked, where predictions are kept.

A pipeline picks one with `backend.module` in the project config (or `--backend`);
`@backend` instantiates it as `self.backend_impl` with the config's `backend` settings.
"""

from __future__ import annotations

import json
import os
import random
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


class BackendError(RuntimeError):
    """A backend operation failed; the message says what and where."""


class Backend(ABC):
    """What every deployment target provides to the pipelines."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    @abstractmethod
    def deploy(self, model_uri: str, model_version: str) -> bool:
        """Serve `model_uri` (registry version `model_version`) at the configured target.

        Returns False when that version was already serving (nothing was changed).
        """

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and release what it costs (server, endpoint)."""

    @abstractmethod
    def deployed_version(self) -> str | None:
        """The registry version serving at the target now, if any."""

    @abstractmethod
    def invoke(self, payload: list[dict[str, Any]]) -> dict[str, Any]:
        """Send rows to the deployed model; return `{"predictions": [...]}`."""

    @abstractmethod
    def save(self, model_input: pd.DataFrame, model_output: pd.DataFrame) -> None:
        """Capture predictions (inputs and outputs) made outside the server."""

    @abstractmethod
    def load(self, limit: int = 100, labeled_only: bool = False) -> pd.DataFrame | None:
        """The `limit` most recent captured predictions, newest first, with ground truth.

        Columns: the input features, `prediction`, `confidence`, `ground_truth`, `id`,
        `model_version`, `created_at`. None when nothing was captured.
        """

    @abstractmethod
    def label(self, ground_truth_quality: float = 0.8) -> int:
        """Simulate ground truth for unlabeled predictions; return how many were labelled.

        Each label equals the prediction with probability `ground_truth_quality`,
        otherwise another class: a stand-in for labels that arrive from people later.
        """

    @abstractmethod
    def label_by_id(self, ground_truth: dict[str, str]) -> int:
        """Attach real ground truth to predictions by their ids; return how many matched."""


def simulate_ground_truth(
    predictions: list[tuple[str, str]], classes: list[str], quality: float, seed: int | None = None
) -> dict[str, str]:
    """Ground truth for (id, prediction) pairs: right with probability `quality`."""
    if not 0 <= quality <= 1:
        raise ValueError(f"ground truth quality must be in [0, 1], got {quality}.")
    rng = random.Random(seed)
    labels = {}
    for id_, prediction in predictions:
        others = [name for name in classes if name != prediction]
        right = rng.random() < quality or not others
        labels[id_] = prediction if right else rng.choice(others)
    return labels


def captured_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Capture rows (id, created_at, version, inputs JSON, prediction, confidence,
    ground truth) as one DataFrame with the inputs spread into columns."""
    import pandas as pd

    inputs = pd.DataFrame([json.loads(row[3]) for row in rows])
    meta = pd.DataFrame(
        rows,
        columns=[
            "id", "created_at", "model_version", "inputs", "prediction", "confidence",
            "ground_truth",
        ],
    ).drop(columns="inputs")  # fmt: skip
    meta["created_at"] = pd.to_datetime(meta["created_at"], unit="s", utc=True)
    return pd.concat([inputs, meta], axis=1)


class Local(Backend):
    """Serve with `mlflow models serve` on this machine; capture predictions in SQLite.

    Settings (config `backend:`): `target` (invocations URL), `database` (capture
    SQLite file), `workers` (server processes, default 2), `max-batch-size` (rows per
    request, default 1000), `state-dir` (server pid and logs, default `.serving`).
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.target = self.config.get("target", "http://127.0.0.1:8080/invocations")
        self.database = str(Path(self.config.get("database", "penguins.db")).resolve())
        self.workers = int(self.config.get("workers", 2))
        self.max_batch_size = int(self.config.get("max-batch-size", 1000))
        self.state_dir = self.config.get("state-dir", ".serving")

    def _server(self):
        from inference.local import LocalServer

        return LocalServer(self.state_dir)

    def _store(self):
        from inference.capture import CaptureStore

        return CaptureStore(self.database)

    def deployed_version(self) -> str | None:
        from inference.local import ping

        state = self._server().state()
        return state.model_version if state and ping(state.url) else None

    def deploy(self, model_uri: str, model_version: str) -> bool:
        from inference.local import ServerError

        if self.deployed_version() == str(model_version):
            return False
        environment = {
            "SERVING_CAPTURE_DATABASE": self.database,
            "SERVING_MODEL_VERSION": str(model_version),
            "SERVING_MAX_BATCH_SIZE": str(self.max_batch_size),
        }
        if "MLFLOW_TRACKING_URI" in os.environ:
            environment["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"]
        try:
            self._server().start(
                model_uri, str(model_version), self.target, self.workers, environment
            )
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

    def save(self, model_input: pd.DataFrame, model_output: pd.DataFrame) -> None:
        import uuid

        ids = (
            model_output["id"].tolist()
            if "id" in model_output
            else [uuid.uuid4().hex for _ in range(len(model_output))]
        )
        store = self._store()
        try:
            store.save(
                ids,
                model_input.to_dict("records"),
                model_output["prediction"].tolist(),
                model_output["confidence"].tolist(),
                model_output["model_version"].iloc[0] if "model_version" in model_output else None,
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


def __getattr__(name: str) -> type:
    """`backend.Sagemaker` lives in its own module, imported only when asked for."""
    if name == "Sagemaker":
        from inference.sagemaker import Sagemaker

        return Sagemaker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
