"""model_monitoring.performance_estimate: accuracy estimated from confidences (CBPE)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from common.calibration import Calibration, fit_calibration
from model_monitoring.performance_estimate import (
    BAND_Z,
    Estimate,
    estimate_accuracy,
    stored_calibration,
)

# Right half the time up to 0.6, then always: a map with two steps.
STEPS = Calibration(
    confidences=[0.5, 0.6, 0.8, 1.0],
    probabilities=[0.5, 0.5, 1.0, 1.0],
    rows=4,
    accuracy=0.75,
    ece_raw=0.1,
    ece=None,
)


def test_a_worked_example() -> None:
    # Confidences 0.55, 0.7 and 0.9 map to 0.5, 0.75 (halfway between 0.6 and 0.8) and 1.
    estimate = estimate_accuracy([0.55, 0.7, 0.9], STEPS)
    assert estimate is not None
    assert estimate.accuracy == pytest.approx((0.5 + 0.75 + 1.0) / 3)
    # Variance of a sum of Bernoulli(p): 0.25 + 0.1875 + 0, over 3 rows.
    standard_error = math.sqrt(0.25 + 0.1875) / 3
    assert estimate.standard_error == pytest.approx(standard_error)
    assert estimate.low == pytest.approx(estimate.accuracy - BAND_Z * standard_error)
    assert estimate.high == pytest.approx(min(1.0, estimate.accuracy + BAND_Z * standard_error))
    assert estimate.rows == 3 and estimate.calibrated


def test_the_band_stays_within_zero_and_one() -> None:
    estimate = estimate_accuracy([0.55], STEPS)
    assert estimate is not None
    assert 0.0 <= estimate.low <= estimate.accuracy <= estimate.high <= 1.0
    certain = estimate_accuracy([0.99, 1.0], STEPS)
    assert certain is not None and certain.low == certain.high == certain.accuracy == 1.0


def test_without_a_calibration_the_raw_confidences_are_the_probabilities() -> None:
    estimate = estimate_accuracy([0.9, 0.7, float("nan")], None)  # a missing confidence
    assert estimate is not None
    assert estimate.accuracy == pytest.approx(0.8)
    assert estimate.rows == 2 and not estimate.calibrated
    assert "uncalibrated" in estimate.summary()


def test_no_answers_no_estimate() -> None:
    assert estimate_accuracy([], STEPS) is None
    assert estimate_accuracy([float("nan")], None) is None


def synthetic_model(
    rng: np.random.Generator, rows: int, overconfidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Confidences, and whether each answer was right: right with probability the
    confidence less `overconfidence`."""
    confidences = rng.beta(8, 1.5, rows).clip(0.34, 1.0)
    correct = rng.random(rows) < (confidences - overconfidence).clip(0, 1)
    return confidences, correct


def test_a_calibrated_estimate_finds_the_accuracy_of_an_overconfident_model() -> None:
    """Fitted on 5,000 out-of-fold answers, the estimate of windows of 500 new answers
    lands near each window's realised accuracy, its band holds it about 95% of the time,
    and the raw confidences would have been 0.1 too high."""
    rng = np.random.default_rng(7)
    fitted_on, right = synthetic_model(rng, 5000, overconfidence=0.1)
    calibration = fit_calibration(fitted_on, right, np.arange(5000) % 5)
    errors, covered, raw_errors = [], 0, []
    windows = 200
    for _ in range(windows):
        confidences, correct = synthetic_model(rng, 500, overconfidence=0.1)
        estimate = estimate_accuracy(confidences, calibration)
        assert estimate is not None
        realised = correct.mean()
        errors.append(estimate.accuracy - realised)
        covered += estimate.low <= realised <= estimate.high
        raw = estimate_accuracy(confidences, None)
        assert raw is not None
        raw_errors.append(raw.accuracy - realised)
    assert abs(np.mean(errors)) < 0.01  # no bias left
    assert np.max(np.abs(errors)) < 0.06
    assert 0.88 <= covered / windows <= 0.99
    assert np.mean(raw_errors) == pytest.approx(0.1, abs=0.01)


def test_the_figures_are_the_mlflow_metrics() -> None:
    estimate = Estimate(0.9, 0.85, 0.95, 0.025, 500, True)
    assert estimate.figures() == {
        "estimated_accuracy": 0.9,
        "estimated_accuracy_low": 0.85,
        "estimated_accuracy_high": 0.95,
        "estimate_rows": 500.0,
    }
    assert Estimate(**estimate.as_dict()) == estimate
    assert "0.900 [0.850, 0.950] on 500 answers" in estimate.summary()


def test_the_calibration_stored_with_a_version_is_read_back(
    mlflow_client: Any, tracking_uri: str
) -> None:
    import mlflow

    from model_training.confidence_calibration import calibration_tags, log_calibration

    calibration = fit_calibration(np.linspace(0.5, 1.0, 40), [False] * 4 + [True] * 36)
    name = "estimate-tests"
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        log_calibration(calibration.as_dict())
    if not mlflow_client.search_registered_models(f"name = '{name}'"):
        mlflow_client.create_registered_model(name)
    tagged = mlflow_client.create_model_version(name, "unused", run.info.run_id)
    bare = mlflow_client.create_model_version(name, "unused", run.info.run_id)
    for key, value in calibration_tags(calibration.as_dict()).items():
        mlflow_client.set_model_version_tag(name, tagged.version, key, value)
    assert stored_calibration(name, tagged.version) == calibration
    # Without its tags a version has no calibration (registered by older code).
    assert stored_calibration(name, bare.version) is None
    assert stored_calibration(name, None) is None
    assert stored_calibration(name, "999") is None
