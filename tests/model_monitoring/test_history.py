"""model_monitoring.history: the tags a monitoring run is recorded with in MLflow.

Recording and reading the history back run against a real MLflow store in the
monitoring pipeline's tests (tests/pipelines/test_monitoring.py).
"""

from __future__ import annotations

from model_monitoring.history import monitoring_tags


def test_a_run_is_tagged_with_its_alert_and_its_metaflow_run() -> None:
    assert monitoring_tags([], None, "Monitoring/12") == {
        "alert": "False",
        "metaflow_run": "Monitoring/12",
    }
    assert monitoring_tags(["Data drift detected in island."], None, "Monitoring/13") == {
        "alert": "True",
        "metaflow_run": "Monitoring/13",
    }


def test_a_compared_shadow_adds_its_version_and_verdict() -> None:
    finding = {"challenger_better": True, "shadow_version": "7", "champion_version": "6"}
    assert monitoring_tags([], finding, "Monitoring/14") == {
        "alert": "False",
        "metaflow_run": "Monitoring/14",
        "shadow_version": "7",
        "challenger_better": "True",
    }


def test_each_runs_estimate_sits_beside_the_accuracy_realised_later() -> None:
    import pandas as pd

    from model_monitoring.history import estimates_beside_accuracy

    history = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "start_time": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True),
            "tags.model_version": ["1", "2", "2"],
            "metrics.estimated_accuracy": [0.97, 0.95, 0.95],
            "metrics.estimated_accuracy_low": [0.95, 0.93, 0.93],
            "metrics.estimated_accuracy_high": [0.99, 0.97, 0.97],
            "metrics.accuracy": [0.96, float("nan"), 0.94],  # b ran before the labels
            "metrics.rows": [300.0, 0.0, 200.0],
        }
    )
    runs = estimates_beside_accuracy(history, limit=2)
    assert [run["run"] for run in runs] == ["b", "c"]  # the newest two, oldest first
    assert runs[0]["accuracy"] is None and runs[0]["estimated"] == 0.95
    assert runs[1] | {"when": ""} == {
        "run": "c",
        "when": "",
        "version": "2",
        "estimated": 0.95,
        "low": 0.93,
        "high": 0.97,
        "accuracy": 0.94,
        "labelled_rows": 200.0,
    }
    # Runs recorded before estimates existed have none.
    older = estimates_beside_accuracy(pd.DataFrame({"run_id": ["z"], "metrics.accuracy": [0.9]}))
    assert older[0]["estimated"] is None and older[0]["accuracy"] == 0.9
