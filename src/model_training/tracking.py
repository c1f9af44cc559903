"""The training pipeline's MLflow records: its parent run, one nested run per fold, the
training data, and every fold's metrics and the cross-validation summary.

`start` opens the runs and records the data; `register` writes the metrics in one go
(`log_cross_validation`), so only those two steps import MLflow. What every stage
shares of MLflow (the tracking store, the training data's location) is `common.tracking`.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Metric

from common.tracking import TRAINING_DATA_ARTIFACT, prepare_tracking_store, use_experiment

if TYPE_CHECKING:
    import pandas as pd


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
    use_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(parameters)
        yield run.info.run_id


def open_fold_runs(folds: int) -> list[str]:
    """One nested run per cross-validation fold under the active run; their ids."""
    ids = []
    for fold in range(1, folds + 1):  # numbered from 1, as the logs and the cards do
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
