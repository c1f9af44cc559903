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
