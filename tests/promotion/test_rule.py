"""Tests for promotion.rule: the paired comparison, McNemar's test and the promotion rule,
against figures worked out by hand."""

import pytest
from support.statistics import mcnemar_statistic

from promotion.rule import beats, compare_paired, mcnemar_p_value


def test_mcnemar_exact_p_value_of_a_worked_example() -> None:
    # 2 rows only the champion got right, 8 only the challenger: P(X <= 2) for
    # X ~ Binomial(10, 1/2) is (1 + 10 + 45) / 1024; two-sided, twice that.
    assert mcnemar_p_value(2, 8) == pytest.approx(2 * 56 / 1024)
    assert mcnemar_p_value(8, 2) == mcnemar_p_value(2, 8)


def test_mcnemar_statistic_of_the_textbook_table() -> None:
    # The classic 2x2 table with discordant cells 121 and 59: chi-squared 21.35.
    assert mcnemar_statistic(121, 59) == pytest.approx(21.3556, abs=1e-4)
    assert mcnemar_p_value(121, 59) < 1e-4


def test_an_even_split_or_no_disagreement_is_no_evidence() -> None:
    assert mcnemar_p_value(0, 0) == 1.0
    assert mcnemar_p_value(5, 5) == 1.0


def test_large_counts_stay_exact_and_finite() -> None:
    p = mcnemar_p_value(2400, 2600)
    assert 0 < p < 0.01


def test_compare_paired_counts_discordant_rows() -> None:
    truth = ["a", "a", "b", "b", "c"]
    champion = ["a", "b", "b", "a", "c"]  # 3 right
    challenger = ["a", "a", "b", "b", "a"]  # 4 right
    comparison = compare_paired(truth, champion, challenger)
    assert comparison.rows == 5
    assert comparison.champion_accuracy == pytest.approx(0.6)
    assert comparison.challenger_accuracy == pytest.approx(0.8)
    assert (comparison.champion_only, comparison.challenger_only) == (1, 2)
    assert comparison.difference == pytest.approx(0.2)
    assert comparison.p_value == pytest.approx(1.0)
    assert comparison.figures()["difference"] == pytest.approx(0.2)


def test_compare_paired_refuses_unpaired_or_empty_rows() -> None:
    with pytest.raises(ValueError, match="same rows"):
        compare_paired(["a"], ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="label captured predictions"):
        compare_paired([], [], [])


@pytest.mark.parametrize(
    ("difference", "p_value", "min_gain", "max_p_value", "wins"),
    [
        (0.0, 1.0, 0.0, None, True),  # a tie is enough with the default rule
        (-0.01, 0.5, 0.0, None, False),
        (0.02, 0.5, 0.05, None, False),
        (0.06, 0.04, 0.05, 0.05, True),
        (0.06, 0.2, 0.05, 0.05, False),  # better, but not significantly
        (0.06, None, 0.0, 0.05, False),
    ],
)
def test_promotion_rule(difference, p_value, min_gain, max_p_value, wins) -> None:
    won, reason = beats(difference, p_value, min_gain, max_p_value)
    assert won is wins
    assert reason


def test_a_comparison_without_labelled_rows_says_how_to_label_them() -> None:
    with pytest.raises(ValueError, match="label captured predictions first"):
        compare_paired([], [], [])
