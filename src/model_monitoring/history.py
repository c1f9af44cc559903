"""TODO docstring."""

from __future__ import annotations

from typing import TYPE_CHECKING

import mlflow

if TYPE_CHECKING:
    import pandas as pd


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
