"""The winner against the defaults (src/model_tuning/comparison.py)."""

from __future__ import annotations

import math

import pytest

from common.settings import TuningSettings
from model_tuning.comparison import compare_with_defaults, corrected_t_test


def test_the_corrected_t_test_widens_the_variance_by_the_overlap_of_the_folds() -> None:
    from scipy import stats

    differences = [0.02, 0.01, 0.03, 0.0, 0.02]
    mean = sum(differences) / 5
    variance = sum((d - mean) ** 2 for d in differences) / 4
    plain = stats.ttest_1samp(differences, 0.0).pvalue
    # k = 5 folds: each tests a quarter as many rows as it trains on.
    statistic = mean / math.sqrt((1 / 5 + 1 / 4) * variance)
    expected = 2 * stats.t.sf(statistic, 4)
    assert corrected_t_test(differences, 1 / 4) == pytest.approx(expected)
    assert corrected_t_test(differences, 1 / 4) > plain  # more cautious than the plain test
    assert corrected_t_test(differences, 0.0) == pytest.approx(plain)


def test_differences_without_spread() -> None:
    assert corrected_t_test([0.0, 0.0, 0.0], 0.5) == 1.0
    assert corrected_t_test([0.01, 0.01, 0.01], 0.5) == 0.0
    with pytest.raises(ValueError, match="at least 2 folds"):
        corrected_t_test([0.1], 0.5)


def test_a_clear_gain_is_recommended() -> None:
    settings = TuningSettings()
    verdict = compare_with_defaults(
        [0.95, 0.96, 0.97, 0.95, 0.96], [0.80, 0.82, 0.81, 0.80, 0.83], 0.25, settings
    )
    assert verdict.recommended and verdict.gain == pytest.approx(0.146)
    assert verdict.p_value < 0.05
    assert "better than the defaults" in verdict.reason


def test_a_small_gain_leaves_the_defaults_standing() -> None:
    verdict = compare_with_defaults(
        [0.99, 0.98, 1.0, 0.97, 0.99], [0.98, 0.99, 0.99, 0.97, 0.98], 0.25, TuningSettings()
    )
    assert not verdict.recommended
    assert "not under tuning.max_p_value 0.05" in verdict.reason


def test_no_gain_is_never_better_whatever_the_p_value() -> None:
    settings = TuningSettings(max_p_value=None)
    verdict = compare_with_defaults([0.9, 0.9], [0.9, 0.9], 1.0, settings)
    assert not verdict.recommended and verdict.gain == 0.0
    assert "not more than tuning.min_gain" in verdict.reason


def test_a_lower_loss_is_the_gain_when_the_objective_is_the_loss() -> None:
    settings = TuningSettings(objective="loss", max_p_value=None)
    verdict = compare_with_defaults([0.2, 0.3], [0.4, 0.5], 1.0, settings)
    assert verdict.recommended and verdict.gain == pytest.approx(0.2)


def test_without_a_finished_trial_the_defaults_stand() -> None:
    verdict = compare_with_defaults(None, [0.9, 0.8], 1.0, TuningSettings())
    assert not verdict.recommended and verdict.reason == "no trial ran every fold"
