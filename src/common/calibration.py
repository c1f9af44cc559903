"""A classifier's confidence calibrated: from its top-class confidence to the probability
that its answer is right.

The training pipeline fits the map at registration on the cross-validation's
out-of-fold predictions (every row scored by a fold model that never saw it) and
stores it with the version (`CALIBRATION_ARTIFACT` on the version's run, its error in
the tags `CALIBRATION_TAGS`); monitoring applies it to captured confidences to
estimate accuracy before any label arrives (`model_monitoring.performance_estimate`).

The map is isotonic regression (pool adjacent violators), in numpy: the right answer's
probability never falls as confidence rises, and nothing else is assumed of its shape.
It is stored as the points scikit-learn's `IsotonicRegression` keeps (each block's
first and last confidence), read back by linear interpolation and clipped at both ends,
so it gives the values scikit-learn would; the fit pools its steps to `MIN_STEP_ROWS`
rows at least and takes confidences to `CONFIDENCE_DECIMALS` decimals (see there).
Calibration error is the expected calibration error (ECE) over `ECE_BINS` equal-width
bins of confidence: the raw confidences' on the out-of-fold rows, and the calibrated
ones' by cross-fitting (each fold's rows mapped by a calibration fitted on the other
folds), which is what the map will do on rows it was not fitted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CALIBRATION_ARTIFACT = "calibration.json"  # on the registered version's MLflow run
# Model-version tags that say a calibration is stored, and how good it is.
CALIBRATION_TAGS = ("calibration_ece", "calibration_ece_raw", "calibration_rows")
ECE_BINS = 10
METHOD = "isotonic"
# Rows each step of the map holds at least. Plain isotonic regression on a few hundred
# rows with a handful of errors maps every confidence under the lowest wrong answer's
# to 0 (nothing was seen right there); pooled steps of this many rows say what was.
MIN_STEP_ROWS = 20
# And at most about this many steps, however many rows: the map stays small to store.
MAX_STEPS = 200
# Confidences are fitted to this many decimals: at most 10,001 distinct values, counted
# in one pass, so the fit and its cross-fitting take a fraction of a second at a million
# rows (20 s unrounded), and a map finer than 0.0001 would say nothing more.
CONFIDENCE_DECIMALS = 4


@dataclass(frozen=True)
class Calibration:
    """A non-decreasing map from top-class confidence to P(correct), and its evidence.

    `confidences` and `probabilities` are the map's points (interpolated between, clipped
    outside); `rows` and `accuracy` those of the out-of-fold predictions it was fitted
    on; `ece_raw` the raw confidences' calibration error there, `ece` the calibrated
    ones' by cross-fitting (None with a single fold).
    """

    confidences: list[float]
    probabilities: list[float]
    rows: int
    accuracy: float
    ece_raw: float
    ece: float | None
    method: str = METHOD

    def apply(self, confidences: Any) -> np.ndarray:
        """P(correct) of each confidence."""
        values = np.asarray(confidences, dtype=float)
        return np.interp(values, self.confidences, self.probabilities)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def tags(self) -> dict[str, str]:
        """The model-version tags of `CALIBRATION_TAGS`."""
        ece = "" if self.ece is None else f"{self.ece:.4f}"
        values = (ece, f"{self.ece_raw:.4f}", str(self.rows))
        return dict(zip(CALIBRATION_TAGS, values, strict=True))


def isotonic_points(
    x: Any, y: Any, min_rows: float = 1, weights: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """The points of the non-decreasing weighted least-squares fit of `y` on `x` (PAV).

    Equal `x` are pooled first (their weighted mean `y`, their summed weight); each block
    of the fit keeps its first and last `x`, as scikit-learn's `IsotonicRegression` does,
    and points inside a flat run are dropped. With `min_rows`, neighbouring blocks are
    pooled until each weighs that much (still non-decreasing: a pooled mean lies between
    its parts). `weights` (default 1 a point) count the rows a point stands for.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    weights = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    distinct, inverse = np.unique(x, return_inverse=True)
    counts = np.bincount(inverse, weights=weights)
    means = np.bincount(inverse, weights=y * weights) / counts
    blocks: list[list[float]] = []  # [mean, weight, first index, last index]
    for index, (mean, weight) in enumerate(zip(means, counts, strict=True)):
        blocks.append([float(mean), float(weight), index, index])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            _pool_last_two(blocks)
    blocks = _at_least(blocks, min_rows)
    fitted = np.empty(len(distinct))
    for mean, _, first, last in blocks:
        fitted[int(first) : int(last) + 1] = mean
    edges = sorted({int(index) for block in blocks for index in (block[2], block[3])})
    kept = [
        index
        for position, index in enumerate(edges)
        if position in (0, len(edges) - 1)
        or not fitted[edges[position - 1]] == fitted[index] == fitted[edges[position + 1]]
    ]
    return distinct[kept], fitted[kept]


def _pool_last_two(blocks: list[list[float]]) -> None:
    last = blocks.pop()
    previous = blocks[-1]
    total = previous[1] + last[1]
    previous[0] = (previous[0] * previous[1] + last[0] * last[1]) / total
    previous[1], previous[3] = total, last[3]


def _at_least(blocks: list[list[float]], min_rows: float) -> list[list[float]]:
    """The blocks pooled from the left until each holds `min_rows` rows; a short last
    block joins the one before it."""
    pooled: list[list[float]] = []
    for block in blocks:
        pooled.append(list(block))
        if len(pooled) > 1 and pooled[-2][1] < min_rows:
            _pool_last_two(pooled)
    if len(pooled) > 1 and pooled[-1][1] < min_rows:
        _pool_last_two(pooled)
    return pooled


def calibration_error(confidences: Any, correct: Any, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the rows' share of each equal-width confidence bin
    times |accuracy - mean confidence| there, summed. 0 without rows."""
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if not len(confidences):
        return 0.0
    which = np.minimum((confidences * bins).astype(int), bins - 1)
    gap = np.bincount(which, weights=correct - confidences, minlength=bins)
    return float(np.abs(gap).sum() / len(confidences))


def fit_calibration(
    confidences: Any, correct: Any, folds: Sequence[int] | None = None
) -> Calibration:
    """The calibration of out-of-fold top-class `confidences`, `correct` saying whether
    each answer was right; `folds` (each row's fold) for the cross-fitted error."""
    confidences = np.asarray(confidences, dtype=float).reshape(-1)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    if len(confidences) != len(correct) or not len(confidences):
        raise ValueError(
            f"Expected one outcome per confidence, at least one: {len(confidences)} "
            f"confidences, {len(correct)} outcomes."
        )
    codes = np.rint(np.clip(confidences, 0, 1) * 10**CONFIDENCE_DECIMALS).astype(np.int64)
    points, probabilities = _binned_fit(codes, correct, np.ones(len(codes), dtype=bool))
    return Calibration(
        confidences=points.tolist(),
        probabilities=probabilities.tolist(),
        rows=len(confidences),
        accuracy=float(correct.mean()),
        ece_raw=calibration_error(confidences, correct),
        ece=_cross_fitted_error(codes, correct, folds),
    )


def _binned_fit(codes: np.ndarray, correct: np.ndarray, rows: np.ndarray) -> tuple:
    """The map fitted on the `rows` (a mask) of confidences given as integer `codes`
    (confidence * 10**CONFIDENCE_DECIMALS): counted per code first, in one pass."""
    size = 10**CONFIDENCE_DECIMALS + 1
    counts = np.bincount(codes[rows], minlength=size)
    right = np.bincount(codes[rows], weights=correct[rows], minlength=size)
    present = np.flatnonzero(counts)
    return isotonic_points(
        present / 10**CONFIDENCE_DECIMALS,
        right[present] / counts[present],
        max(MIN_STEP_ROWS, int(rows.sum()) // MAX_STEPS),
        counts[present],
    )


def _cross_fitted_error(
    codes: np.ndarray, correct: np.ndarray, folds: Sequence[int] | None
) -> float | None:
    """ECE of calibrated confidences (as `_binned_fit`'s codes), each fold's rows mapped
    by the other folds' fit."""
    if folds is None:
        return None
    folds_array = np.asarray(folds).reshape(-1)
    names = np.unique(folds_array)
    if len(names) < 2:
        return None
    confidences = codes / 10**CONFIDENCE_DECIMALS
    calibrated = np.empty(len(codes))
    for fold in names:
        held_out = folds_array == fold
        points, probabilities = _binned_fit(codes, correct, ~held_out)
        calibrated[held_out] = np.interp(confidences[held_out], points, probabilities)
    return calibration_error(calibrated, correct)
