"""common.calibration: the map from top-class confidence to P(correct), and its error."""

from __future__ import annotations

import numpy as np
import pytest

from common.calibration import (
    CALIBRATION_TAGS,
    MIN_STEP_ROWS,
    Calibration,
    calibration_error,
    fit_calibration,
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
