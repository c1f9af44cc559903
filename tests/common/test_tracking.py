"""Tests for common.tracking: the experiments' kind, and the MLflow UI opening on runs.

The last test opens the session's training run in a real `mlflow ui` with headless
Chromium, as a user does following the address the project gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.tracking import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    prepare_tracking_store,
    runs_page,
    use_experiment,
)


@pytest.fixture
def local_store(tmp_path: Path) -> Any:
    """A SQLite store of its own, active for `mlflow`; its client."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_tracking_store(uri)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def test_a_new_experiment_is_marked_as_model_training(local_store: Any) -> None:
    experiment_id = use_experiment("fresh")

    experiment = local_store.get_experiment(experiment_id)
    assert experiment.name == "fresh"
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_an_existing_experiment_gets_the_mark_and_keeps_its_runs(
    local_store: Any, tmp_path: Path
) -> None:
    import mlflow

    old = local_store.create_experiment("older", artifact_location=str(tmp_path / "a"))
    run = local_store.create_run(old)
    local_store.set_experiment_tag(old, EXPERIMENT_KIND_TAG, "genai_development")

    assert use_experiment("older") == old

    assert local_store.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert mlflow.get_run(run.info.run_id).info.experiment_id == old


def test_the_runs_page_is_the_experiment_runs_tab() -> None:
    assert runs_page("http://127.0.0.1:5000/", "7") == "http://127.0.0.1:5000/#/experiments/7/runs"


def test_the_mlflow_ui_lists_the_training_runs(
    training_run: Any, mlflow_client: Any, tracking_uri: str, chromium: str, tmp_path: Path
) -> None:
    from support.mlflow_ui import dump_page, mlflow_ui

    run = mlflow_client.get_run(training_run["start"].task.data.mlflow_run_id)
    experiment = mlflow_client.get_experiment(run.info.experiment_id)
    assert experiment.tags.get(EXPERIMENT_KIND_TAG) == MODEL_TRAINING_KIND

    with mlflow_ui(tracking_uri, tmp_path) as url:
        dom = dump_page(chromium, runs_page(url, experiment.experiment_id), tmp_path / "profile")
        # What the UI's "Model training" switch sets, which the README has users click.
        switched = f"{url}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning"
        dom_switched = dump_page(chromium, switched, tmp_path / "profile-switched")

    # The runs table names the training run (the Metaflow run id; its fold runs are
    # folded under it), where the GenAI overview an experiment opens on by default
    # ("Detect issues in traces") would show none.
    for page in (dom, dom_switched):
        assert run.info.run_name in page, page[-3000:]
        assert "Detect issues in traces" not in page
