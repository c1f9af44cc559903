"""What a monitoring run raises and records: its alerts and its figures (MLflow metrics).

An alert is a failure of the monitored model or of its data: a drifted column,
production accuracy under the threshold, or accuracy estimated under it before any
label arrives, from the model's confidences and whether its inputs lie inside the
training data's support (`model_monitoring.performance_estimate`).
A better challenger is not one (see `model_monitoring.shadow_comparison`).
"""

from __future__ import annotations

from typing import Any


def figures(
    rows: int,
    tests: list[dict[str, str]],
    drift_detected: bool,
    drifted: list[str],
    accuracy: float | None,
) -> dict[str, float]:
    """The figures of one monitoring run, as MLflow metrics (no accuracy without rows)."""
    metrics = {
        "rows": float(rows),
        "drift_detected": float(drift_detected),
        "drifted_columns": float(len(drifted)),
        "failed_tests": float(sum(test["status"] == "FAIL" for test in tests)),
    }
    if accuracy is not None:
        metrics["accuracy"] = float(accuracy)
    return metrics


def alerts(
    drift_detected: bool,
    drifted: list[str],
    accuracy: float | None,
    threshold: float,
    estimate: dict[str, Any] | None = None,
) -> list[str]:
    """Human-readable alerts, empty when all is well. `estimate` is
    `performance_estimate.Estimate.as_dict()`, or None when there was none."""
    messages = []
    if drift_detected:
        messages.append(f"Data drift detected in {', '.join(drifted)}.")
    if accuracy is not None and accuracy < threshold:
        messages.append(f"Production accuracy {accuracy:.3f} is below the threshold {threshold}.")
    if estimate is not None and estimate["accuracy"] < threshold:
        messages.append(
            f"Estimated accuracy {estimate['accuracy']:.3f} [{estimate['low']:.3f}, "
            f"{estimate['high']:.3f}] on {estimate['rows']} recent answers, from their "
            f"confidences and inputs, is below the threshold {threshold}."
        )
    return messages
