"""The tuning run's MLflow records (src/model_tuning/tracking.py)."""

from __future__ import annotations

import json
from pathlib import Path

from model_tuning.comparison import Verdict
from model_tuning.space import default_hyperparameters
from model_tuning.tracking import log_trials, log_verdict
from model_tuning.trials import TrialRecord


def test_every_trial_is_a_nested_run_with_its_fold_metrics(tmp_path: Path) -> None:
    import mlflow

    from common.tracking import prepare_tracking_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_tracking_store(uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("tuning", artifact_location=str(tmp_path / "a"))
    parent = client.create_run(experiment).info.run_id
    baseline = TrialRecord({}, default_hyperparameters(), [0.9, 0.8], [0.3, 0.4], False, 1.0, True)
    pruned = TrialRecord(
        {"epochs": 2}, {**default_hyperparameters(), "epochs": 2}, [0.5], [0.9], True, 0.5
    )

    ids = log_trials(parent, experiment, [pruned], baseline)
    log_verdict(
        parent, Verdict("accuracy", [0.9, 0.8], [], 0.0, 1.0, False, "why"), None, {"epochs": 50}
    )

    defaults, trial = (client.get_run(run_id) for run_id in ids)
    assert defaults.info.run_name == "defaults" and trial.info.run_name == "trial-0"
    assert trial.data.tags["mlflow.parentRunId"] == parent and trial.data.tags["state"] == "pruned"
    assert trial.data.params["epochs"] == "2" and trial.data.metrics["folds_run"] == 1
    history = client.get_metric_history(ids[0], "fold_accuracy")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 0.9),
        (1, 0.8),
    ]
    tags = client.get_run(parent).data.tags
    assert tags["recommended"] == "false" and tags["best_trial"] == "none"
    assert json.loads(tags["recommended_hyperparameters"]) == {"epochs": 50}
