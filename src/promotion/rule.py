"""Champion against challenger on the same labelled rows: a paired comparison.

Both models answered the same requests, so their accuracies are not independent
samples: what tells them apart is only the rows where exactly one of them is right.
McNemar's test asks whether those discordant rows split evenly, as they would if
both models were equally accurate. The p-value here is the exact two-sided binomial
one (no normal approximation), which holds for few discordant rows as for many.

The promotion rule (`promotion:` settings), the one copy of it: a paired comparison
counts only on at least `min_rows` labelled rows; the challenger's accuracy must be at
least the champion's plus `min_gain` and, when `max_p_value` is set, McNemar's
p-value must be under it. The deployment pipeline's gate and the monitoring
pipeline's "challenger is better" finding both decide with `paired_verdict`. Only
the standard library: any task can import this.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.settings import PromotionSettings


@dataclass(frozen=True)
class PairedComparison:
    """Accuracies of two models on the same labelled rows, and McNemar's test."""

    rows: int
    champion_accuracy: float
    challenger_accuracy: float
    champion_only: int  # rows the champion got right and the challenger wrong
    challenger_only: int  # rows the challenger got right and the champion wrong
    p_value: float

    @property
    def difference(self) -> float:
        """The challenger's accuracy minus the champion's."""
        return self.challenger_accuracy - self.champion_accuracy

    def figures(self) -> dict[str, Any]:
        """Every figure, for tags, logs and cards."""
        return {**asdict(self), "difference": self.difference}


def mcnemar_p_value(champion_only: int, challenger_only: int) -> float:
    """Exact two-sided McNemar p-value for the two counts of discordant rows.

    Twice the binomial(n, 1/2) probability of a split at least as uneven as seen,
    capped at 1; 1.0 when no row is discordant.
    """
    if champion_only < 0 or challenger_only < 0:
        raise ValueError("discordant row counts cannot be negative.")
    discordant = champion_only + challenger_only
    if discordant == 0:
        return 1.0
    smaller = min(champion_only, challenger_only)
    tail = sum(math.comb(discordant, k) for k in range(smaller + 1))
    return min(1.0, 2 * tail / 2**discordant)


def compare_paired(
    truth: Sequence[Any], champion: Sequence[Any], challenger: Sequence[Any]
) -> PairedComparison:
    """Compare two models' predictions of the same rows against their ground truth."""
    if not len(truth) == len(champion) == len(challenger):
        raise ValueError(
            f"paired predictions need the same rows: {len(truth)} labels, "
            f"{len(champion)} champion and {len(challenger)} challenger predictions."
        )
    if len(truth) == 0:
        raise ValueError(
            "no labelled rows to compare the models on: label captured predictions "
            "first (Backend.label_by_id, or the traffic pipeline's --ground-truth-quality)."
        )
    champion_right = [str(p) == str(t) for p, t in zip(champion, truth, strict=True)]
    challenger_right = [str(p) == str(t) for p, t in zip(challenger, truth, strict=True)]
    champion_only = sum(a and not b for a, b in zip(champion_right, challenger_right, strict=True))
    challenger_only = sum(
        b and not a for a, b in zip(champion_right, challenger_right, strict=True)
    )
    rows = len(truth)
    return PairedComparison(
        rows=rows,
        champion_accuracy=sum(champion_right) / rows,
        challenger_accuracy=sum(challenger_right) / rows,
        champion_only=champion_only,
        challenger_only=challenger_only,
        p_value=mcnemar_p_value(champion_only, challenger_only),
    )


def beats(
    difference: float, p_value: float | None, min_gain: float, max_p_value: float | None
) -> tuple[bool, str]:
    """The promotion rule: (does the challenger win, why in a few words)."""
    # A hair of tolerance: accuracies are ratios of counts, `0.1 + 0.2` style sums are not.
    if difference < min_gain - 1e-12:
        return False, f"gain {difference:+.3f} is under the required {min_gain:+.3f}"
    if max_p_value is not None:
        if p_value is None:
            return False, "no p-value to check against max_p_value"
        if p_value >= max_p_value:
            return False, f"p={p_value:.3g} is not under max_p_value {max_p_value:g}"
    return True, f"gain {difference:+.3f} meets the required {min_gain:+.3f}"


def has_enough_rows(rows: int, settings: PromotionSettings) -> bool:
    """Whether `rows` paired labelled rows are evidence enough (`promotion.min_rows`)."""
    return rows >= settings.min_rows


def paired_verdict(comparison: PairedComparison, settings: PromotionSettings) -> tuple[bool, str]:
    """The promotion rule on a paired comparison: (does the challenger win, why)."""
    if not has_enough_rows(comparison.rows, settings):
        return False, (
            f"only {comparison.rows} paired labelled rows; "
            f"promotion.min_rows is {settings.min_rows}"
        )
    return beats(comparison.difference, comparison.p_value, settings.min_gain, settings.max_p_value)
