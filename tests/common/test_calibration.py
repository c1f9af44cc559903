"""common.calibration: the map from top-class confidence to P(correct), and its error."""

from __future__ import annotations

import numpy as np
import pytest

from common.calibration import (
    CALIBRATION_TAGS,
    MIN_STEP_ROWS,
    SHRINKAGE,
    Calibration,
    InputSupport,
    calibration_error,
    class_distances,
    fit_calibration,
    fit_class_support,
    isotonic_points,
)


@pytest.mark.parametrize("seed", range(20))
def test_the_map_is_scikit_learns_isotonic_regression(seed: int) -> None:
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(seed)
    rows = int(rng.integers(1, 300))
    x = np.round(rng.random(rows), int(rng.integers(1, 4)))  # ties, as real confidences have
    y = (rng.random(rows) < x).astype(float)
    expected = IsotonicRegression(out_of_bounds="clip").fit(x, y)
    points, values = isotonic_points(x, y)
    grid = np.linspace(-0.2, 1.2, 301)
    np.testing.assert_allclose(np.interp(grid, points, values), expected.predict(grid))


def test_a_worked_example_pools_the_violators() -> None:
    # Right, wrong, right, right: the wrong answer at 0.6 pools with the right one at 0.5.
    points, values = isotonic_points([0.5, 0.6, 0.7, 0.9], [1, 0, 1, 1])
    assert points.tolist() == [0.5, 0.6, 0.7, 0.9]
    assert values.tolist() == [0.5, 0.5, 1.0, 1.0]


def test_flat_runs_keep_only_their_ends() -> None:
    points, values = isotonic_points([0.1, 0.2, 0.3, 0.4, 0.5], [1, 1, 1, 1, 1])
    assert points.tolist() == [0.1, 0.5]
    assert values.tolist() == [1.0, 1.0]


def test_steps_hold_at_least_min_rows_and_stay_non_decreasing() -> None:
    # Two wrong answers at the lowest confidences, then right ones: plain isotonic
    # regression says "never right" below 0.2; steps of 5 rows say 3 in 5.
    x = np.linspace(0.1, 1.0, 10)
    y = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    assert isotonic_points(x, y)[1][0] == 0.0
    points, values = isotonic_points(x, y, min_rows=5)
    assert values[0] == pytest.approx(0.6)
    assert np.all(np.diff(values) >= 0)
    assert np.interp(0.05, points, values) == pytest.approx(0.6)  # clipped below


def test_calibration_error_worked_example() -> None:
    # Bin [0.9, 1): confidences 0.95 twice, one right: |0.5 - 0.95| over 2 of 4 rows.
    # Bin [0.5, 0.6): 0.5 twice, both right: |1 - 0.5| over 2 of 4 rows.
    error = calibration_error([0.95, 0.95, 0.5, 0.5], [1, 0, 1, 1])
    assert error == pytest.approx(0.5 * 0.45 + 0.5 * 0.5)
    assert calibration_error([], []) == 0.0
    assert calibration_error([1.0, 1.0], [1, 1]) == 0.0  # 1.0 falls in the last bin


def test_fit_calibration_records_its_evidence() -> None:
    rng = np.random.default_rng(3)
    confidences = rng.uniform(0.4, 1.0, 2000)
    correct = rng.random(2000) < confidences  # calibrated already
    folds = np.arange(2000) % 5
    calibration = fit_calibration(confidences, correct, folds)
    assert calibration.rows == 2000
    assert calibration.accuracy == pytest.approx(correct.mean())
    assert calibration.ece_raw < 0.05 and calibration.ece is not None and calibration.ece < 0.05
    assert fit_calibration(confidences, correct).ece is None  # no folds: not cross-fitted
    mapped = calibration.apply([0.5, 0.75, 0.95])
    np.testing.assert_allclose(mapped, [0.5, 0.75, 0.95], atol=0.08)


def test_overconfidence_is_measured_and_corrected() -> None:
    rng = np.random.default_rng(4)
    confidences = rng.uniform(0.6, 1.0, 5000)
    correct = rng.random(5000) < confidences - 0.2  # 0.2 less often right than announced
    calibration = fit_calibration(confidences, correct, np.arange(5000) % 5)
    assert calibration.ece_raw == pytest.approx(0.2, abs=0.02)
    assert calibration.ece is not None and calibration.ece < 0.03
    assert calibration.apply([0.9])[0] == pytest.approx(0.7, abs=0.05)


def test_fit_calibration_refuses_mismatched_or_empty_input() -> None:
    with pytest.raises(ValueError, match="one outcome per confidence"):
        fit_calibration([0.9, 0.8], [True])
    with pytest.raises(ValueError, match="at least one"):
        fit_calibration([], [])


def test_a_calibration_survives_json_and_names_its_tags() -> None:
    import json

    calibration = fit_calibration(np.linspace(0.5, 1, 50), [True] * 45 + [False] * 5, [0, 1] * 25)
    again = Calibration.from_dict(json.loads(json.dumps(calibration.as_dict())))
    assert again == calibration
    tags = calibration.tags()
    assert list(tags) == list(CALIBRATION_TAGS)
    assert tags["calibration_rows"] == "50"
    assert float(tags["calibration_ece_raw"]) == pytest.approx(calibration.ece_raw, abs=1e-4)
    assert MIN_STEP_ROWS > 1


# Two classes of four points each, a diamond around (0, 0) and one around (10, 0).
DIAMOND = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
TWO_DIAMONDS = np.vstack([DIAMOND, DIAMOND + np.array([10.0, 0.0])])
TWO_LABELS = np.array([0] * 4 + [1] * 4)


def test_class_support_worked_example() -> None:
    means, precisions = fit_class_support(TWO_DIAMONDS, TWO_LABELS)
    np.testing.assert_allclose(means, [[0, 0], [10, 0]], atol=1e-12)
    # Each class: variance 2/3 on both axes (sum of squares 2, over 4 - 1), no
    # covariance; the mean variance is 2/3 too, so shrinking keeps (2/3) I: precision 1.5 I.
    np.testing.assert_allclose(precisions, [np.eye(2) * 1.5] * 2)
    distances = class_distances(means, precisions, [[0, 0], [2, 0], [5, 0], [10, 3]])
    np.testing.assert_allclose(distances, np.sqrt(1.5 * np.array([0, 4, 25, 9])))


def test_class_support_shrinks_a_column_constant_within_a_class() -> None:
    """A one-hot column constant within each class leaves each covariance singular:
    shrunk, it has a small variance there, and a row with that column flipped is far."""
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.normal(size=200), np.repeat([0.0, 1.0], 100)])
    y = np.repeat([0, 1], 100)
    means, precisions = fit_class_support(x, y)
    assert np.isfinite(precisions).all()
    # The mean variance over both columns of both classes (the first column's variances
    # over 4): the constant column's is SHRINKAGE times that.
    mean_variance = (np.var(x[:100, 0], ddof=1) + np.var(x[100:, 0], ddof=1)) / 4
    assert 1 / precisions[0][1][1] == pytest.approx(SHRINKAGE * mean_variance)
    usual, flipped = class_distances(means, precisions, [[0.0, 0.0], [3.0, 0.5]])
    assert usual < 0.2 and flipped > 2.5


def test_a_label_without_rows_is_near_nothing() -> None:
    means, precisions = fit_class_support(DIAMOND, [2, 2, 2, 2])
    assert np.isnan(means[:2]).all() and not np.isnan(means[2]).any()
    assert class_distances(means, precisions, [[0.0, 0.0]]) == pytest.approx([0.0])


def support_of_two_diamonds(threshold: float) -> InputSupport:
    means, precisions = fit_class_support(TWO_DIAMONDS, TWO_LABELS)
    return InputSupport(
        classes=["near", "far"],
        class_share=[0.75, 0.25],
        means=means.tolist(),
        precisions=precisions.tolist(),
        threshold=threshold,
        quantile=0.99,
        rows=8,
        outside_rows=0,
        outside_accuracy=None,
        transform={},
    )


def test_input_support_says_which_rows_lie_outside_and_what_a_guess_is_worth() -> None:
    support = support_of_two_diamonds(threshold=float(np.sqrt(6)))
    # Distances sqrt(0), sqrt(6) (on the threshold: inside), sqrt(1.5 * 9) past it.
    assert support.outside([[0, 0], [2, 0], [10, 3]]).tolist() == [False, False, True]
    # A guess is right as often as the class it names occurs; an unknown class never.
    np.testing.assert_allclose(support.right_if_outside(["far", "near", "gone"]), [0.25, 0.75, 0])
    assert InputSupport.from_dict(support.as_dict()) == support
