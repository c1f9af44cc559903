"""Tests for promotion.decision: the decision, its status and the words that explain it."""

from __future__ import annotations

from typing import Any

from common.settings import PromotionSettings
from promotion.decision import (
    FORCE_HINT,
    forced,
    judge_cross_validated,
    judge_paired,
    no_evidence,
    refusal_message,
    without_comparison,
)
from promotion.evidence import CrossValidated
from promotion.rule import compare_paired

DEFAULTS = PromotionSettings()


def comparison(champion_right: int, challenger_right: int, both: int, rows: int) -> Any:
    """Predictions on `rows` rows: `both` right for both, then each one's own rights."""
    truth = ["a"] * rows
    champion = ["a"] * both + ["a"] * champion_right + ["b"] * (rows - both - champion_right)
    challenger = (
        ["a"] * both
        + ["b"] * champion_right
        + ["a"] * challenger_right
        + ["b"] * (rows - both - champion_right - challenger_right)
    )
    return compare_paired(truth, champion, challenger)


def test_a_worse_challenger_is_refused_with_its_figures() -> None:
    paired = comparison(champion_right=30, challenger_right=20, both=400, rows=480)

    decision = judge_paired(paired, "7", "6", DEFAULTS)

    assert decision.refused and decision.evidence == "production"
    assert decision.reason.startswith(
        f"challenger v7 {420 / 480:.3f} vs champion v6 {430 / 480:.3f} on 480 rows, p="
    )
    assert "not promoted (gain -0.021 is under the required +0.000)" in decision.reason
    assert decision.reason.endswith(FORCE_HINT)
    assert decision.figures["champion_only"] == 30 and decision.figures["challenger_only"] == 20
    assert decision.figures["min_rows"] == 200
    assert refusal_message(decision).startswith("Challenger v7 ")
    assert refusal_message(decision).endswith("Nothing serving was changed.")


def test_a_better_challenger_is_promoted_unless_significance_is_required() -> None:
    paired = comparison(champion_right=20, challenger_right=30, both=400, rows=480)
    assert judge_paired(paired, "7", "6", DEFAULTS).decision == "promoted"

    strict = PromotionSettings(max_p_value=0.05)
    decision = judge_paired(paired, "7", "6", strict)
    assert decision.refused  # 30 against 20 discordant rows: p is about 0.2
    assert f"p={paired.p_value:.3g} is not under max_p_value 0.05" in decision.reason

    clear = comparison(champion_right=5, challenger_right=40, both=400, rows=480)
    assert judge_paired(clear, "7", "6", strict).decision == "promoted"


def test_min_gain_is_required() -> None:
    paired = comparison(champion_right=20, challenger_right=30, both=400, rows=480)
    decision = judge_paired(paired, "7", "6", PromotionSettings(min_gain=0.05))
    assert decision.refused and "under the required +0.050" in decision.reason


def test_cross_validated_scores_decide_for_want_of_labelled_rows_and_say_so() -> None:
    better = CrossValidated(0.95, 0.02, "tags")
    worse = CrossValidated(0.90, None, "training run")

    promoted = judge_cross_validated(better, worse, "7", "6", 12, DEFAULTS)
    assert promoted.decision == "promoted" and promoted.evidence == "cross-validation"
    assert promoted.reason.startswith(
        "only 12 labelled captures (promotion.min_rows is 200), so cross-validated scores "
        "were compared: challenger v7 0.950 ± 0.020 vs champion v6 0.900: promoted"
    )
    assert promoted.figures["scores_from"] == {"challenger": "tags", "champion": "training run"}

    refused = judge_cross_validated(worse, better, "7", "6", 12, DEFAULTS)
    assert refused.refused and refused.reason.endswith(FORCE_HINT)

    strict = judge_cross_validated(better, worse, "7", "6", 12, PromotionSettings(max_p_value=0.1))
    assert strict.refused
    assert "cross-validated scores give no p-value" in strict.reason


def test_no_evidence_says_what_is_missing_and_how_to_get_it() -> None:
    decision = no_evidence(["6"], "7", "6", labelled_rows=0, min_rows=200)

    assert decision.refused and decision.evidence == "none"
    for part in (
        "challenger v7 cannot be compared with champion v6",
        "only 0 labelled captures (promotion.min_rows is 200)",
        "no cross-validated accuracy for version 6",
        "Backend.label_by_id",
        "--mode labels",
        "lower promotion.min_rows",
        FORCE_HINT,
    ):
        assert part in decision.reason


def test_requests_that_need_no_comparison() -> None:
    assert without_comparison("previous", "5", "6", "previous").decision == "rollback"
    assert without_comparison("latest", "5", None, "previous").decision == "promoted"
    assert without_comparison("champion", "6", "6", "previous").decision == "redeployed"
    assert without_comparison("5", "5", "6", "previous") is None
    # A version number, even that of `previous`, is compared: only the alias rolls back.
    assert without_comparison("latest", "7", "6", "previous") is None


def test_force_keeps_what_the_comparison_said() -> None:
    paired = comparison(champion_right=30, challenger_right=20, both=400, rows=480)
    refused = judge_paired(paired, "7", "6", DEFAULTS)

    decision = forced(refused, "7")

    assert decision.decision == "forced" and not decision.refused
    assert decision.reason.startswith("version 7 deployed with --force; the comparison said: ")
    assert FORCE_HINT not in decision.reason and "not promoted" in decision.reason
    assert decision.figures == refused.figures
