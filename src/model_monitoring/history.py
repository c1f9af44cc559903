"""Monitoring runs in MLflow: each run's figures recorded, and the history read back.

Every monitoring run is an MLflow run of the `monitoring.experiment` experiment, tagged
with the model name and version it monitored, its figures as metrics and, when a
shadow was compared, the comparison as a JSON artifact (`SHADOW_ARTIFACT`). The
history of a model is those runs, oldest first: what the `end` card charts, and the
accuracy each run estimated before labels beside the accuracy realised once they came
(`estimates_beside_accuracy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common.registry import equals_filter

if TYPE_CHECKING:
    import pandas as pd

SHADOW_ARTIFACT = "shadow_comparison.json"  # in the MLflow monitoring run


def monitoring_tags(
    alerts: list[str], finding: dict[str, Any] | None, metaflow_run: str
) -> dict[str, str]:
    """The tags of a monitoring run besides the model's: whether it raised an alert,
    which Metaflow run it was and, with a shadow compared, the shadow's verdict."""
    tags = {"alert": str(bool(alerts)), "metaflow_run": metaflow_run}
    if finding is not None:
        tags["shadow_version"] = finding["shadow_version"]
        tags["challenger_better"] = str(finding["challenger_better"])
    return tags


def log_monitoring(
    experiment: str, model_name: str, version: str | None, metrics: dict[str, float], tags: dict
) -> str:
    """Record one monitoring run's figures; return its run id."""
    import mlflow

    from common.tracking import use_experiment

    use_experiment(experiment)
    with mlflow.start_run(run_name=f"{model_name}-v{version}") as run:
        mlflow.set_tags({"model_name": model_name, "model_version": str(version), **tags})
        mlflow.log_metrics(metrics)
    return run.info.run_id


def log_shadow_comparison(
    run_id: str, comparison: dict[str, Any], finding: dict[str, Any] | None
) -> None:
    """Attach the champion-shadow comparison (`ShadowComparison.as_dict()`) and its
    finding to the monitoring run `run_id`, as `SHADOW_ARTIFACT`."""
    import mlflow

    mlflow.log_dict({**comparison, "finding": finding}, SHADOW_ARTIFACT, run_id=run_id)


def monitoring_history(experiment: str, model_name: str, limit: int = 100) -> pd.DataFrame:
    """Past monitoring runs of `model_name`, oldest first, with their metrics."""
    import mlflow

    runs = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=equals_filter("tags.model_name", model_name),
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    return runs.iloc[::-1].reset_index(drop=True)


# The history's columns that `estimates_beside_accuracy` reads (MLflow metrics).
ESTIMATE_COLUMNS = {
    "estimated": "metrics.estimated_accuracy",
    "low": "metrics.estimated_accuracy_low",
    "high": "metrics.estimated_accuracy_high",
    "accuracy": "metrics.accuracy",
    "labelled_rows": "metrics.rows",
}


def estimates_beside_accuracy(history: pd.DataFrame, limit: int = 10) -> list[dict[str, Any]]:
    """The newest `limit` runs of `history`, oldest first: when, which version, the
    accuracy estimated before labels and its band, and the accuracy realised on labels
    (None where a run had no such figure)."""
    import math

    rows = []
    for _, run in history.tail(limit).iterrows():
        row: dict[str, Any] = {
            "run": str(run.get("run_id", "")),
            "when": str(run.get("start_time", "")),
            "version": run.get("tags.model_version"),
        }
        for name, column in ESTIMATE_COLUMNS.items():
            value = run.get(column)
            row[name] = None if value is None or math.isnan(value) else float(value)
        rows.append(row)
    return rows
