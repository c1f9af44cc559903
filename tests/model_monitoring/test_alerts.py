"""model_monitoring.alerts: a monitoring run's alerts and its figures."""

from __future__ import annotations

from model_monitoring.alerts import alerts, figures


def test_no_alerts_when_all_is_well() -> None:
    assert alerts(False, [], 0.9, 0.7) == []
    assert alerts(False, [], 0.7, 0.7) == []  # at the threshold is not under it
    assert alerts(False, [], None, 0.7) == []  # no accuracy known: nothing to say


def test_drift_alert_names_the_columns() -> None:
    messages = alerts(True, ["culmen_length_mm", "island"], 0.95, 0.7)
    assert len(messages) == 1
    assert "drift" in messages[0].lower()
    assert "culmen_length_mm" in messages[0] and "island" in messages[0]


def test_accuracy_alert_gives_the_accuracy_and_the_threshold() -> None:
    messages = alerts(False, [], 0.3125, 0.7)
    assert len(messages) == 1
    assert "accuracy" in messages[0].lower()
    assert "0.312" in messages[0] or "0.313" in messages[0]
    assert "0.7" in messages[0]


def test_both_alerts_together() -> None:
    messages = alerts(True, ["body_mass_g"], 0.5, 0.7)
    assert len(messages) == 2
    assert any("body_mass_g" in m for m in messages)
    assert any("accuracy" in m.lower() for m in messages)


def test_figures_count_rows_drift_and_failed_tests() -> None:
    tests = [
        {"name": "a", "status": "FAIL", "description": ""},
        {"name": "b", "status": "SUCCESS", "description": ""},
        {"name": "c", "status": "FAIL", "description": ""},
    ]
    assert figures(300, tests, True, ["island"], 0.75) == {
        "rows": 300.0,
        "drift_detected": 1.0,
        "drifted_columns": 1.0,
        "failed_tests": 2.0,
        "accuracy": 0.75,
    }
    # No labelled rows, no accuracy: the metric is left out rather than logged as 0.
    assert figures(0, [], False, [], None) == {
        "rows": 0.0,
        "drift_detected": 0.0,
        "drifted_columns": 0.0,
        "failed_tests": 0.0,
    }


ESTIMATE = {"accuracy": 0.62, "low": 0.58, "high": 0.66, "rows": 500, "calibrated": True}


def test_an_estimate_under_the_threshold_is_an_alert_before_any_label() -> None:
    messages = alerts(False, [], None, 0.7, ESTIMATE)
    assert len(messages) == 1
    assert "Estimated accuracy 0.620 [0.580, 0.660] on 500" in messages[0]
    assert "0.7" in messages[0]
    assert alerts(False, [], None, 0.7, {**ESTIMATE, "accuracy": 0.7}) == []  # at it: no
    assert alerts(False, [], None, 0.7, None) == []  # nothing estimated: nothing to say
