"""Serving fixtures: a tiny registered model, a broken version of it, real model servers.

- `serving_models`: a model trained in-process on the penguins (seconds, not the
  training pipeline's minutes), registered twice as good versions of
  `MODEL_NAME`, plus one broken version (`broken_model.py`: answers without
  `confidence`) registered first, so the newest version is a good one. Registered once
  per session; the versions are cached in the session directory, so the pipeline tests,
  which load this file as a plain module (`serving_support` in tests/conftest.py), reuse them.
- `inference_server`: one `mlflow models serve` (2 workers, at most 50 rows per request,
  capture in a temporary SQLite file) on a free port of 127.0.0.1, shared by the tests in
  this directory. `server` makes sure it still runs (the kill -9 test ends it).

Everything else here is plain functions, usable from any test file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
TESTS_DIR = HERE.parent
REPO_ROOT = TESTS_DIR.parent
SRC = REPO_ROOT / "src"
LOCAL_CONFIG = REPO_ROOT / "config" / "local.yml"
PENGUINS_CSV = REPO_ROOT / "data" / "penguins.csv"
BROKEN_MODEL = HERE / "broken_model.py"

MODEL_NAME = "penguins-serving-tests"
EXPERIMENT = "serving-tests"
TRAINING_EPOCHS = 30
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
NUMERIC = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]
ISLANDS = ["Biscoe", "Dream", "Torgersen"]


def pytest_plugin_registered(plugin: Any, plugin_name: str, manager: Any) -> None:
    """Keep `import conftest` meaning tests/conftest.py for the test files elsewhere.

    pytest imports every conftest.py that is not in a package as the module `conftest`,
    so loading this one replaces tests/conftest.py in `sys.modules`, and a later
    `from conftest import ...` (tests/pipelines does that) would find this file. The
    hook is historic: registering this conftest replays it for the root one too.
    """
    root = TESTS_DIR / "conftest.py"
    if Path(getattr(plugin, "__file__", None) or "/nonexistent") == root:
        sys.modules["conftest"] = plugin


def free_port() -> int:
    """tests/conftest.py's `free_port`.

    Imported when called: while pytest loads this file, `conftest` names this file
    (see `pytest_plugin_registered` above); afterwards it names tests/conftest.py.
    """
    from conftest import free_port as root_free_port

    return root_free_port()


# --- registered models -----------------------------------------------------------------


@dataclass(frozen=True)
class ServingModels:
    """Versions of `name` in the session's registry."""

    name: str
    good: tuple[str, ...]
    broken: str

    def uri(self, version: str) -> str:
        return f"models:/{self.name}/{version}"


def _train() -> tuple[Any, tuple[Any, Any, Any]]:
    """Train a small classifier on the penguins; return the schema, model and transformers."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from common.config import load_project_configuration
    from common.data import DatasetSchema, load_dataset
    from common.features import fit_transform
    from common.modeling import train_model

    schema = DatasetSchema.from_config(load_project_configuration(LOCAL_CONFIG)["dataset"])
    data = load_dataset(PENGUINS_CSV, schema, 42)
    features, target, x, y = fit_transform(data, schema)
    model, _ = train_model(
        x, y, classes=len(target.categories_[0]), epochs=TRAINING_EPOCHS, batch_size=32, seed=42
    )
    return schema, (model, features, target)


def registered_models(session_root: Path, tracking_uri: str) -> ServingModels:
    """Register the broken version, then two good ones (once per session)."""
    cache = session_root / "serving-tests" / "models.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        return ServingModels(saved["name"], tuple(saved["good"]), saved["broken"])

    import mlflow

    from common.registry import log_servable_model

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

    schema, trained = _train()

    def log(python_model: Path | None = None) -> str:
        # As src/pipelines/training.py's `register` step does.
        with mlflow.start_run(experiment_id=experiment_id):
            logged = log_servable_model(*trained, schema, MODEL_NAME, python_model=python_model)
        return str(logged.version)

    broken = log(BROKEN_MODEL)
    good = tuple(log() for _ in range(2))
    models = ServingModels(MODEL_NAME, good, broken)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(asdict(models)))
    return models


# --- model servers -----------------------------------------------------------------------


@dataclass
class ModelServer:
    """A real `mlflow models serve` started with `backends.local_server.LocalServer`."""

    model_uri: str
    version: str
    directory: Path
    workers: int = 2
    max_batch_size: int = 50
    url: str = field(default="")

    def __post_init__(self) -> None:
        self.url = self.url or f"http://127.0.0.1:{free_port()}/invocations"

    @property
    def database(self) -> Path:
        return self.directory / "capture.db"

    @property
    def state_dir(self) -> Path:
        return self.directory / "serving"

    def backend_config(self) -> dict[str, Any]:
        """Settings of a `backend.Local` that talks to this server and its database."""
        return {
            "target": self.url,
            "database": str(self.database),
            "state-dir": str(self.state_dir),
            "workers": self.workers,
            "max-batch-size": self.max_batch_size,
        }

    def start(self) -> None:
        from backends.local_server import LocalServer

        environment = {
            "SERVING_CAPTURE_DATABASE": str(self.database),
            "SERVING_MODEL_VERSION": self.version,
            "SERVING_MAX_BATCH_SIZE": str(self.max_batch_size),
            "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
        }
        LocalServer(self.state_dir).start(
            self.model_uri, self.version, self.url, self.workers, environment
        )

    def running(self) -> bool:
        from backends.local_server import ping

        return ping(self.url)

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    @property
    def pid(self) -> int:
        from backends.local_server import LocalServer

        state = LocalServer(self.state_dir).state()
        assert state is not None, "the server is not running"
        return state.pid

    def stop(self) -> None:
        from backends.local_server import LocalServer

        LocalServer(self.state_dir).stop()


def write_project_config(path: Path, backend: dict[str, Any], model_name: str = MODEL_NAME) -> Path:
    """A project config like config/local.yml, with its own backend and model name."""
    import yaml

    local = yaml.safe_load(LOCAL_CONFIG.read_text())
    config = {
        "project": local["project"],
        "backend": {"module": "backend.Local", **backend},
        "dataset": local["dataset"],
        "model": {"name": model_name},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def pipeline_config(session_root: Path) -> tuple[Path, dict[str, Any]]:
    """The session's config for the deployment and traffic pipelines, and its backend.

    One target (a free port), capture database and state directory for the whole
    session: the traffic tests use the server the deployment tests leave running rather
    than pay for starting another.
    """
    directory = session_root / "serving-tests" / "pipelines"
    settings_file = directory / "backend.json"
    if settings_file.exists():
        return directory / "config.yml", json.loads(settings_file.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    settings = {
        "target": f"http://127.0.0.1:{free_port()}/invocations",
        "database": str(directory / "capture.db"),
        "state-dir": str(directory / "serving"),
        "workers": 1,
    }
    config = write_project_config(directory / "config.yml", settings)
    settings_file.write_text(json.dumps(settings))
    return config, settings


# --- the capture database ------------------------------------------------------------------


def captured_count(database: Path | str) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]


def captured_rows(database: Path | str, ids: Iterable[str] | None = None) -> dict[str, dict]:
    """Captured predictions by id (all of them, or those among `ids`)."""
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute("SELECT * FROM predictions").fetchall()
    wanted = None if ids is None else set(ids)
    return {
        row["id"]: {**dict(row), "inputs": json.loads(row["inputs"])}
        for row in rows
        if wanted is None or row["id"] in wanted
    }


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def serving_models(session_root: Path, tracking_uri: str) -> ServingModels:
    return registered_models(session_root, tracking_uri)


@pytest.fixture(scope="session")
def inference_server(
    serving_models: ServingModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelServer]:
    version = serving_models.good[0]
    server = ModelServer(
        serving_models.uri(version), version, tmp_path_factory.mktemp("inference-server")
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(inference_server: ModelServer) -> ModelServer:
    """The shared server, restarted if a test ended it."""
    inference_server.ensure_running()
    return inference_server
