"""The tuning pipeline's MLflow records: a parent run, and one nested run per trial.

`start` opens the parent run (`model_training.tracking.training_run`: its parameters,
the search space); `select` writes every trial as a nested run in one go, with its
hyperparameters and per-fold metrics, and the verdict on the parent. The lanes that
train never import MLflow (seconds per process), and a retried lane leaves nothing
behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model_tuning.comparison import Verdict
    from model_tuning.trials import TrialRecord


def trial_run_name(number: int | None) -> str:
    """The nested run's name: `trial-<n>`, or `defaults` for the baseline."""
    return "defaults" if number is None else f"trial-{number}"


def log_trials(
    parent_run_id: str, experiment_id: str, trials: Sequence[TrialRecord], baseline: TrialRecord
) -> list[str]:
    """One nested run per trial (and one for the defaults) under the parent; their ids."""
    import mlflow

    client = mlflow.MlflowClient()
    ids = []
    for number, record in [(None, baseline), *enumerate(trials)]:
        run = client.create_run(
            experiment_id,
            run_name=trial_run_name(number),
            tags={
                "mlflow.parentRunId": parent_run_id,
                "state": "pruned" if record.pruned else "complete",
            },
        )
        client.log_batch(
            run.info.run_id,
            metrics=_trial_metrics(record),
            params=_params(record.hyperparameters),
        )
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    return ids


def _params(hyperparameters: dict[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(name, str(value)) for name, value in hyperparameters.items()]


def _trial_metrics(record: TrialRecord) -> list[Any]:
    """Per-fold accuracy and loss (the fold as the step), their means, the folds run."""
    from mlflow.entities import Metric

    timestamp = int(time.time() * 1000)
    metrics = [
        Metric(f"fold_{metric}", float(value), timestamp, fold)
        for metric in ("accuracy", "loss")
        for fold, value in enumerate(record.scores(metric))
    ]
    metrics += [
        Metric("cv_accuracy", record.mean("accuracy"), timestamp, 0),
        Metric("cv_loss", record.mean("loss"), timestamp, 0),
        Metric("folds_run", float(len(record.accuracy)), timestamp, 0),
        Metric("seconds", float(record.seconds), timestamp, 0),
    ]
    return metrics


def log_verdict(
    parent_run_id: str, verdict: Verdict, best: int | None, recommended: dict[str, Any]
) -> None:
    """The outcome on the parent run: the winner, the comparison and the recommendation."""
    import mlflow
    from mlflow.entities import Metric, RunTag

    timestamp = int(time.time() * 1000)
    metrics = [
        Metric("gain", verdict.gain, timestamp, 0),
        Metric("p_value", verdict.p_value, timestamp, 0),
    ]
    tags = [
        RunTag("best_trial", "none" if best is None else str(best)),
        RunTag("recommended", str(verdict.recommended).lower()),
        RunTag("verdict", verdict.reason),
        RunTag("recommended_hyperparameters", json.dumps(recommended, sort_keys=True)),
    ]
    mlflow.MlflowClient().log_batch(parent_run_id, metrics=metrics, tags=tags)
