"""MLflow bookkeeping shared by the pipelines. Callers import this inside steps."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Metric

if TYPE_CHECKING:
    import pandas as pd

TRAINING_DATA_ARTIFACT = "training-data/data.csv"
SQLITE_PREFIX = "sqlite:///"


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


def log_training_data(data: pd.DataFrame, source: str, target: str) -> None:
    """Record the training data on the active run, as an MLflow dataset and a file.

    The dataset input (name, digest, schema) tells every model version what it was
    trained on; the CSV beside it is the exact rows, for drift monitoring later.
    """
    dataset = mlflow.data.from_pandas(data, source=str(source), targets=target, name="training")
    mlflow.log_input(dataset, context="training")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / Path(TRAINING_DATA_ARTIFACT).name
        data.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(TRAINING_DATA_ARTIFACT).parent))


@contextlib.contextmanager
def training_run(
    tracking_uri: str, experiment: str, run_name: str, parameters: dict[str, Any]
) -> Iterator[str]:
    """Open a training pipeline's parent run, with its parameters; yield its id."""
    prepare_tracking_store(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(parameters)
        yield run.info.run_id


def open_fold_runs(folds: int) -> list[str]:
    """One nested run per cross-validation fold under the active run; their ids."""
    ids = []
    for fold in range(folds):
        with mlflow.start_run(run_name=f"cross-validation-fold-{fold}", nested=True) as nested:
            ids.append(nested.info.run_id)
    return ids


def history_metrics(history: dict[str, list[float]], timestamp: int) -> list[Metric]:
    """Per-epoch training metrics as MLflow metrics with the epoch as the step."""
    return [
        Metric(key=f"training_{name}", value=float(value), timestamp=timestamp, step=epoch)
        for name, values in history.items()
        for epoch, value in enumerate(values)
    ]


def log_cross_validation(
    parent_run_id: str,
    folds: list[tuple[str, dict[str, list[float]], float, float]],
    summary: dict[str, float],
) -> None:
    """Write each fold's history and test scores to its run, the summary to the parent.

    `folds` holds (fold run id, training history, test accuracy, test loss).
    """
    client = mlflow.MlflowClient()
    timestamp = int(time.time() * 1000)
    for run_id, history, accuracy, loss in folds:
        metrics = history_metrics(history, timestamp)
        metrics += [
            Metric("test_accuracy", float(accuracy), timestamp, 0),
            Metric("test_loss", float(loss), timestamp, 0),
        ]
        client.log_batch(run_id, metrics=metrics)
    client.log_batch(
        parent_run_id,
        metrics=[
            Metric("cross_validation_accuracy", summary["accuracy"], timestamp, 0),
            Metric("cross_validation_accuracy_std", summary["accuracy_std"], timestamp, 0),
            Metric("cross_validation_loss", summary["loss"], timestamp, 0),
            Metric("cross_validation_loss_std", summary["loss_std"], timestamp, 0),
        ],
    )


def training_data(model_name: str, version: str) -> pd.DataFrame | None:
    """The rows a registered model version was trained on, if its run recorded them."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        run_id = client.get_model_version(model_name, version).run_id
        with tempfile.TemporaryDirectory() as directory:
            path = client.download_artifacts(run_id, TRAINING_DATA_ARTIFACT, directory)
            return pd.read_csv(path)
    except (MlflowException, OSError):
        return None


def log_monitoring(
    experiment: str, model_name: str, version: str | None, metrics: dict[str, float], tags: dict
) -> str:
    """Record one monitoring run's figures; return its run id."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"{model_name}-v{version}") as run:
        mlflow.set_tags({"model_name": model_name, "model_version": str(version), **tags})
        mlflow.log_metrics(metrics)
    return run.info.run_id


def monitoring_history(experiment: str, model_name: str, limit: int = 100) -> pd.DataFrame:
    """Past monitoring runs of `model_name`, oldest first, with their metrics."""
    runs = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=f"tags.model_name = '{model_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    return runs.iloc[::-1].reset_index(drop=True)
