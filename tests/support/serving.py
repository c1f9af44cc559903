"""Tiny registered models and the real model servers the tests share.

- `serving_models`: a model trained in-process on the penguins (seconds, not the
  training pipeline's minutes), registered twice as good versions of `MODEL_NAME`, plus
  one broken version (broken_model.py: answers without `confidence`)
  registered first, so the newest version is a good one. Once per session.
- `inference_server`: one `mlflow models serve` (2 workers, at most 50 rows per request,
  capture in its own SQLite file) on a free port of 127.0.0.1, shared by every test
  that only sends it requests and reads what it captured (counts are differences).
  `server` makes sure it still runs; a test marked `own_server` gets a server of its
  own instead (one that it may kill), stopped after it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.paths import LOCAL_CONFIG, PENGUINS_CSV
from support.places import ModelServer

BROKEN_MODEL = Path(__file__).with_name("broken_model.py")
MODEL_NAME = "penguins-serving-tests"
EXPERIMENT = "serving-tests"
TRAINING_EPOCHS = 30


@dataclass(frozen=True)
class ServingModels:
    """Versions of `name` in the session's registry."""

    name: str
    good: tuple[str, ...]
    broken: str

    def uri(self, version: str) -> str:
        return f"models:/{self.name}/{version}"


def train_small_model(epochs: int = TRAINING_EPOCHS) -> tuple[Any, Any, tuple[Any, Any, Any]]:
    """Train a small classifier on the penguins in this process.

    Returns the schema, the dataset and (model, features transformer, target transformer).
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from common.config import load_project_configuration
    from common.data import DatasetSchema, load_dataset
    from model_training.network import train_model
    from model_training.preprocessing import fit_transform

    schema = DatasetSchema.from_config(load_project_configuration(LOCAL_CONFIG)["dataset"])
    data = load_dataset(PENGUINS_CSV, schema, 42)
    features, target, x, y = fit_transform(data, schema)
    model, _ = train_model(
        x, y, classes=len(target.categories_[0]), epochs=epochs, batch_size=32, seed=42
    )
    return schema, data, (model, features, target)


def register_serving_models(session_root: Path, tracking_uri: str) -> ServingModels:
    """Register the broken version, then two good ones, in experiment `EXPERIMENT`."""
    import mlflow

    from model_training.packaging import log_servable_model, servable_files

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(
            EXPERIMENT, artifact_location=str(session_root / "mlartifacts" / EXPERIMENT)
        )
    )
    schema, _, trained = train_small_model()
    files = servable_files(*trained)

    def log(python_model: Path | None = None) -> str:
        # As src/pipelines/training.py's `register` step does.
        with mlflow.start_run(experiment_id=experiment_id):
            logged = log_servable_model(files, schema, MODEL_NAME, python_model=python_model)
        return str(logged.version)

    broken = log(BROKEN_MODEL)
    good = tuple(log() for _ in range(2))
    # One model registered twice: the same cross-validated scores, tagged as the training
    # pipeline tags them, so that the deployment pipeline may promote either over the other.
    for version in good:
        client.set_model_version_tag(MODEL_NAME, version, "cv_accuracy", "0.95")
        client.set_model_version_tag(MODEL_NAME, version, "cv_accuracy_std", "0.02")
    return ServingModels(MODEL_NAME, good, broken)


# --- fixtures (exposed by tests/conftest.py) ---------------------------------------------


@pytest.fixture(scope="session")
def serving_models(session_root: Path, tracking_uri: str) -> ServingModels:
    return register_serving_models(session_root, tracking_uri)


def _good_model_server(models: ServingModels, directory: Path) -> ModelServer:
    version = models.good[0]
    return ModelServer(
        directory, model_name=models.name, model_uri=models.uri(version), version=version
    )


@pytest.fixture(scope="session")
def inference_server(
    serving_models: ServingModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelServer]:
    server = _good_model_server(serving_models, tmp_path_factory.mktemp("inference-server"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(
    request: pytest.FixtureRequest,
    serving_models: ServingModels,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ModelServer]:
    """The shared server (restarted if something ended it), or, for a test marked
    `own_server`, a server of its own with the same model and settings."""
    if request.node.get_closest_marker("own_server") is None:
        shared: ModelServer = request.getfixturevalue("inference_server")
        shared.ensure_running()
        yield shared
        return
    own = _good_model_server(serving_models, tmp_path_factory.mktemp("own-server"))
    try:
        own.start()
        yield own
    finally:
        own.stop()
