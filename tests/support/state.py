"""Isolated MLflow and Metaflow state: everything a run writes goes under one directory.

The test session gets one such directory (`session_directory()`, set up by
tests/conftest.py before any test module imports Metaflow, which reads its configuration
once, at import time); the demo test and bench/ scripts give their subprocesses one of
their own (`clean_environment`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Variables of the caller that would redirect a subprocess's state.
_REDIRECTING = ("MLFLOW_", "METAFLOW_", "_MLFLOW_", "SERVING_")


def isolated_environment(root: Path, user: str = "pipeline-tests") -> dict[str, str]:
    """Environment variables that keep every Metaflow and MLflow write under `root`.

    Makes the directories they name.
    """
    datastore = root / "metaflow"
    cards = datastore / ".metaflow" / "mf.cards"
    cards.parent.mkdir(parents=True, exist_ok=True)
    if not cards.is_symlink():
        # Metaflow 2.19.39 writes cards to `<sysroot>/.metaflow/<Flow>/runs/...` when
        # METAFLOW_CARD_LOCALROOT is set (CardDatastore.get_storage_root returns None for
        # it) and, when it is not set, to the first `.metaflow` above the working
        # directory: the repository's. The card client reads
        # `<sysroot>/.metaflow/mf.cards/...`. Setting the variable keeps cards out of the
        # repository, and this `mf.cards -> .` link lets the client find them, with or
        # without the bug.
        cards.symlink_to(".", target_is_directory=True)
    home = root / "metaflow-home"
    home.mkdir(exist_ok=True)
    return {
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(datastore),
        "METAFLOW_CARD_LOCALROOT": str(cards),
        # Metaflow reads ~/.metaflowconfig unless METAFLOW_HOME points elsewhere.
        "METAFLOW_HOME": str(home),
        "METAFLOW_USER": user,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        # Experiments the pipelines create keep their artifacts here, not in ./mlruns.
        "_MLFLOW_SERVER_ARTIFACT_ROOT": str(root / "mlartifacts"),
        "KERAS_BACKEND": "jax",
    }


def clean_environment(root: Path, user: str) -> dict[str, str]:
    """The caller's environment for a subprocess that starts empty like a clean checkout:
    nothing of the caller's MLflow, Metaflow or serving settings, its state under `root`."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(_REDIRECTING)
    }
    environment.update(isolated_environment(root, user))
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def tracking_uri_of(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def session_directory() -> Path:
    """The session's temporary directory: everything runs write lives under it."""
    return Path(os.environ["PIPELINE_TESTS_ROOT"])


def shared_session_directory() -> Path:
    """The directory every process of the session shares: under pytest-xdist, the
    controller's session directory (each worker has its own `session_directory()`)."""
    return Path(os.environ["PIPELINE_TESTS_SHARED_ROOT"])


def init_tracking_store(uri: str, artifact_root: Path) -> None:
    """Create the tables of a SQLite tracking store whose artifacts go to `artifact_root`.

    Left to the pipelines, MLflow would create the store with its default artifact
    root, `./mlruns` in the working directory: the repository.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, str(artifact_root)).engine.dispose()


def ensure_experiment(name: str, uri: str | None = None) -> str:
    """Create experiment `name` with its artifacts in the session directory; return its id.

    Pipelines call `mlflow.set_experiment(<project name>)`, which keeps an existing
    experiment's artifact location: create every experiment a test run uses first.
    """
    import mlflow

    client = mlflow.MlflowClient(uri or os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = session_directory() / "mlartifacts" / name
    return client.create_experiment(name, artifact_location=str(artifacts))


# --- fixtures (exposed by tests/conftest.py) ---------------------------------------------


@pytest.fixture(scope="session")
def session_root() -> Path:
    return session_directory()


@pytest.fixture(scope="session")
def tracking_uri(session_root: Path) -> str:
    """The session's MLflow tracking and registry URI, with its tables created."""
    uri = os.environ["MLFLOW_TRACKING_URI"]
    init_tracking_store(uri, session_root / "mlartifacts")
    for name in ("penguins", "Default"):
        ensure_experiment(name, uri)
    return uri


@pytest.fixture(scope="session")
def mlflow_client(tracking_uri: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)


# What `mlflow.set_tracking_uri` / `mlflow.set_experiment` change for the whole process.
# `set_experiment` also exports MLFLOW_EXPERIMENT_ID, which every pipeline run a later
# test starts would inherit: an experiment id of another store.
_MLFLOW_ENVIRONMENT = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")


@pytest.fixture(autouse=True)
def restore_mlflow_globals() -> Iterator[None]:
    """Undo, after each test, what it set for MLflow process-wide (store, experiment)."""
    saved = {name: os.environ.get(name) for name in _MLFLOW_ENVIRONMENT}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
    # The experiment `set_experiment` made active, kept in a module global of MLflow's.
    sys.modules["mlflow.tracking.fluent"]._active_experiment_id = None
