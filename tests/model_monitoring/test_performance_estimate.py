"""model_monitoring.performance_estimate: accuracy estimated from confidences (CBPE)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from common.calibration import Calibration, InputSupport, fit_calibration
from model_monitoring.performance_estimate import (
    BAND_Z,
    Estimate,
    estimate_accuracy,
    right_if_outside,
    stored_calibration,
    stored_support,
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
    # Without an input support (a version registered before it): says so.
    assert "confidences only (plain CBPE)" in estimate.summary()
    checked = Estimate(0.9, 0.85, 0.95, 0.025, 500, True, outside_support=40)
    assert checked.figures()["estimate_outside_support_share"] == pytest.approx(0.08)
    assert "40 of 500 answers (8.0%) outside the training support" in checked.summary()


def test_a_worked_example_with_answers_outside_the_support() -> None:
    # The first example's confidences; the 0.7 answer's input lay outside the support,
    # where a guess of its class is right 0.2 of the time: 0.5, 0.2 and 1.
    estimate = estimate_accuracy([0.55, 0.7, 0.9], STEPS, [np.nan, 0.2, np.nan])
    assert estimate is not None
    assert estimate.accuracy == pytest.approx((0.5 + 0.2 + 1.0) / 3)
    assert estimate.standard_error == pytest.approx(math.sqrt(0.25 + 0.16) / 3)
    assert estimate.outside_support == 1 and estimate.rows == 3
    # A missing confidence drops its row, and the row's support with it.
    dropped = estimate_accuracy([0.55, float("nan"), 0.9], STEPS, [np.nan, 0.2, np.nan])
    assert dropped is not None and dropped.outside_support == 0
    assert dropped.accuracy == pytest.approx(0.75)


def penguin_support() -> tuple[InputSupport, Any, Any]:
    """The input support of the penguins, fitted as the training pipeline fits it (on
    the numpy features transform; the threshold from 5 folds), with the data and schema."""
    from support.monitoring import penguins, project_schema

    from inference.features import FeatureTransform
    from model_training.confidence_calibration import (
        fit_input_support,
        fold_support_distances,
        support_evidence,
    )
    from model_training.preprocessing import fit_feature_blocks

    data, schema = penguins(), project_schema()
    classes = sorted(data[schema.target].unique())
    labels = data[schema.target].map(classes.index).to_numpy()

    def features(rows: Any, fitted_on: Any) -> np.ndarray:
        transform = FeatureTransform.from_blocks(fit_feature_blocks(fitted_on, schema))
        return transform.transform(transform.validate_rows(rows[schema.features])[0])

    folds = np.arange(len(data)) % 5
    distances = np.empty(len(data))
    for fold in range(5):
        seen, unseen = data[folds != fold], data[folds == fold]
        x_seen, x_unseen = features(seen, seen), features(unseen, seen)
        distances[folds == fold] = fold_support_distances(x_seen, labels[folds != fold], x_unseen)
    transform = FeatureTransform.from_blocks(fit_feature_blocks(data, schema))
    description = json.dumps(transform.describe()).encode()
    fitted = fit_input_support(
        features(data, data),
        labels,
        classes,
        support_evidence(distances, np.ones(len(data), dtype=bool)),
        {"transform": ("transform.json", description)},
    )
    assert fitted is not None
    return InputSupport.from_dict(fitted), data, schema


def test_drifted_penguins_fall_outside_their_support_and_normal_ones_inside() -> None:
    """The penguins' support, as registered: the traffic pipeline's normal rows lie
    inside it (they are training rows), most `--drift` rows outside; an island the
    model never saw is outside too; outside, an answer is worth its class's share."""
    import pandas as pd

    from common.traffic import sample_requests

    support, data, schema = penguin_support()
    normal = pd.DataFrame(sample_requests(data, schema, 500, drift=False, seed=1))
    drifted = pd.DataFrame(sample_requests(data, schema, 500, drift=True, seed=1))
    normal["prediction"] = drifted["prediction"] = "Gentoo"
    assert np.isnan(right_if_outside(normal, support)).mean() > 0.98
    guesses = right_if_outside(drifted, support)
    assert 0.5 < (~np.isnan(guesses)).mean() < 0.95
    gentoo_share = float((data[schema.target] == "Gentoo").mean())
    assert np.nanmax(guesses) == np.nanmin(guesses) == pytest.approx(gentoo_share)
    unknown = normal.head(2).assign(island=["Atlantis", normal["island"].iloc[1]])
    assert right_if_outside(unknown, support)[0] == pytest.approx(gentoo_share)
    assert right_if_outside(normal, None) is None


def test_a_support_whose_transform_cannot_be_read_is_not_used() -> None:
    import pandas as pd

    support, _, _ = penguin_support()
    broken = InputSupport.from_dict({**support.as_dict(), "transform": {"format": 0}})
    assert right_if_outside(pd.DataFrame({"prediction": ["Adelie"]}), broken) is None


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


def test_the_input_support_stored_with_a_version_is_read_back(
    mlflow_client: Any, tracking_uri: str
) -> None:
    import mlflow

    from model_training.confidence_calibration import calibration_tags, log_calibration

    support, _, _ = penguin_support()
    calibration = fit_calibration(np.linspace(0.5, 1.0, 40), [False] * 4 + [True] * 36)
    name = "estimate-support-tests"
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        log_calibration(calibration.as_dict(), support.as_dict())
    if not mlflow_client.search_registered_models(f"name = '{name}'"):
        mlflow_client.create_registered_model(name)
    tagged = mlflow_client.create_model_version(name, "unused", run.info.run_id)
    older = mlflow_client.create_model_version(name, "unused", run.info.run_id)
    for key, value in calibration_tags(calibration.as_dict(), support.as_dict()).items():
        mlflow_client.set_model_version_tag(name, tagged.version, key, value)
    # A version registered before supports were stored: its calibration only.
    for key, value in calibration_tags(calibration.as_dict()).items():
        mlflow_client.set_model_version_tag(name, older.version, key, value)
    assert stored_support(name, tagged.version) == support
    assert stored_support(name, older.version) is None
    assert stored_calibration(name, older.version) == calibration
    assert stored_support(name, None) is None
