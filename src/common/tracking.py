"""MLflow bookkeeping shared by the pipelines. Callers import this inside steps."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow

if TYPE_CHECKING:
    import pandas as pd


TRAINING_DATA_ARTIFACT = "training-data/data.csv"


SQLITE_PREFIX = "sqlite:///"

# MLflow's record of what an experiment holds: these hold model training and monitoring
# runs, not GenAI traces. MLflow 3.17.2's UI still chooses the page an experiment opens
# on by its own "GenAI / Model training" switch (GenAI for a new user): see `runs_page`.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


def use_experiment(name: str) -> str:
    """Make `name` the active MLflow experiment, created if new; return its id.

    The experiment is marked as holding model training runs (`EXPERIMENT_KIND_TAG`),
    also when it was created before this mark existed or by another tool.
    """
    experiment = mlflow.set_experiment(name)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
        mlflow.MlflowClient().set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
        )
    return experiment.experiment_id


def runs_page(ui_url: str, experiment_id: str) -> str:
    """The address of an experiment's runs table in the MLflow UI served at `ui_url`.

    MLflow 3.17's UI opens an experiment on GenAI traces unless its "Model training"
    switch is on: this address opens the runs whichever way the switch is set.
    """
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs"


def sqlite_store_path(uri: str) -> Path | None:
    """The file of a `sqlite:///` tracking URI, or None for any other kind of store."""
    if not uri.startswith(SQLITE_PREFIX) or "?" in uri:
        return None
    location = uri.removeprefix(SQLITE_PREFIX)
    return Path(location) if location and location != ":memory:" else None


def prepare_tracking_store(uri: str) -> None:
    """Make a new SQLite store a copy of an empty, already migrated one.

    MLflow builds a new SQLite store by running every schema migration since its first
    release: ~5 s on a quiet 2-core machine, 10 s on a busy one, in the first step of
    every run that starts a new store (a fresh clone, each benchmark, each test
    session). The empty migrated database is the same every time for one MLflow
    version, so it is made once per user (in ~/.cache) and copied. Anything
    unexpected leaves the store to MLflow, which migrates it as before.
    """
    path = sqlite_store_path(uri)
    if path is None or path.exists():
        return
    template = _migrated_template()
    if template is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    shutil.copyfile(template, partial)
    try:
        os.link(partial, path)  # Fails if another process created the store meanwhile.
    except OSError:
        pass
    finally:
        partial.unlink(missing_ok=True)


def _migrated_template() -> Path | None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "penguins-mlops"
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if template.exists():
        return template
    try:
        from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f".{template.name}.{os.getpid()}.partial"
        engine = create_sqlalchemy_engine(f"{SQLITE_PREFIX}{partial}")
        try:
            _initialize_tables(engine)  # Tables only: no experiment, no artifact location.
        finally:
            engine.dispose()
        os.replace(partial, template)
    except Exception:  # A private MLflow function changed, a read-only home: do without.
        return None
    return template


def training_data(model_name: str, version: str) -> pd.DataFrame | None:
    """The rows a registered model version was trained on, if its run recorded them."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from common.registry import quiet_downloads

    client = mlflow.MlflowClient()
    try:
        run_id = client.get_model_version(model_name, version).run_id
        with tempfile.TemporaryDirectory() as directory, quiet_downloads():
            path = client.download_artifacts(run_id, TRAINING_DATA_ARTIFACT, directory)
            return pd.read_csv(path)
    except (MlflowException, OSError):
        return None
