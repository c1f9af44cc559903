"""The winner against the defaults, fold by fold: a corrected paired t-test, and the verdict.

Both configurations were scored on the same folds, so their fold scores are paired:
what matters is the per-fold difference. With k folds there are k differences, five
by default, which rules out Wilcoxon's signed-rank test: its smallest two-sided p-value
for 5 pairs is 2/2^5 = 0.0625, never under 0.05 however large the gain. A paired
t-test uses the sizes of the differences, but plain, it takes the folds as independent
samples when their training sets overlap (each two share (k-2)/(k-1) of their rows),
which understates the variance and makes it too eager. Nadeau and Bengio's correction
(2003; Bouckaert and Frank 2004 for cross-validation) widens the variance of the mean
difference from s²/k to (1/k + n_test/n_train)·s², which is what `corrected_t_test`
computes, with Student's t distribution from scipy (installed with scikit-learn).

The verdict: the winner is recommended only if its mean objective beats the defaults'
by more than `tuning.min_gain` and, when `tuning.max_p_value` is set, the p-value is
under it. Otherwise the defaults stand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.settings import TuningSettings


@dataclass(frozen=True)
class Verdict:
    """The winner's fold scores against the defaults', the test and the decision."""

    objective: str
    default_scores: list[float]
    winner_scores: list[float]
    gain: float  # the mean improvement of the objective (lower loss counts as a gain)
    p_value: float
    recommended: bool
    reason: str

    def figures(self) -> dict[str, Any]:
        """Every figure, for artifacts, tags and cards."""
        return asdict(self)


def corrected_t_test(differences: Sequence[float], test_to_train: float) -> float:
    """Two-sided p-value of the corrected paired t-test that the mean difference is 0.

    `test_to_train` is the ratio of test rows to training rows of a fold, 1/(k-1) for
    k-fold cross-validation. Differences that are all equal give 1.0 when they are
    zero, 0.0 otherwise (no spread: the gain is the same on every fold).
    """
    from scipy import stats

    count = len(differences)
    if count < 2:
        raise ValueError(f"a paired test needs at least 2 folds, got {count}.")
    mean = sum(differences) / count
    variance = sum((d - mean) ** 2 for d in differences) / (count - 1)
    if variance <= 1e-24:
        return 1.0 if abs(mean) <= 1e-12 else 0.0
    statistic = mean / math.sqrt((1 / count + test_to_train) * variance)
    return float(min(1.0, 2 * stats.t.sf(abs(statistic), count - 1)))


def compare_with_defaults(
    winner: Sequence[float] | None,
    defaults: Sequence[float],
    test_to_train: float,
    settings: TuningSettings,
) -> Verdict:
    """The verdict on the winner's fold scores (None when no trial finished) against
    the defaults' on the same folds."""
    objective = settings.objective
    if winner is None:
        return Verdict(objective, list(defaults), [], 0.0, 1.0, False, "no trial ran every fold")
    sign = 1.0 if objective == "accuracy" else -1.0
    differences = [sign * (w - d) for w, d in zip(winner, defaults, strict=True)]
    gain = sum(differences) / len(differences)
    p_value = corrected_t_test(differences, test_to_train)
    recommended, reason = _rule(gain, p_value, settings)
    return Verdict(objective, list(defaults), list(winner), gain, p_value, recommended, reason)


def _rule(gain: float, p_value: float, settings: TuningSettings) -> tuple[bool, str]:
    figures = f"gain {gain:+.4f} in mean {settings.objective}, p={p_value:.3g}"
    if gain <= settings.min_gain + 1e-12:
        return False, f"{figures}: not more than tuning.min_gain {settings.min_gain:+.4f}"
    if settings.max_p_value is not None and p_value >= settings.max_p_value:
        return False, f"{figures}: not under tuning.max_p_value {settings.max_p_value:g}"
    return True, f"{figures}: better than the defaults"
