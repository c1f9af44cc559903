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

Confidences say nothing of inputs unlike any the model was trained on: there a model can
be wrong and sure of itself. `InputSupport` says where the training rows lie, in the
model's own feature space (the version's features transform): per class, the mean and a
shrunk covariance, and a row's distance to the training data is its Mahalanobis
distance to the nearest class. A row is outside the support when that distance passes
`threshold`, the `SUPPORT_QUANTILE` quantile of the out-of-fold rows' distances (each
measured against a support fitted without it), so about 1% of new rows like the
training data's fall outside. It is stored beside the calibration (`SUPPORT_ARTIFACT`,
announced by the tag `SUPPORT_TAG`); monitoring counts answers outside it as
uninformed (`InputSupport.right_if_outside`).
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

SUPPORT_ARTIFACT = "input_support.json"  # on the registered version's MLflow run
SUPPORT_TAG = "input_support_threshold"  # the model-version tag saying one is stored
# The out-of-fold distance quantile past which a row is outside the support: about 1 in
# 100 new rows like the training data's is flagged, which moves an estimate on such
# rows by about 0.01 x (calibrated confidence - the guess's chance), under 0.01.
SUPPORT_QUANTILE = 0.99
# Each class's covariance is shrunk this far toward a scaled identity: a one-hot
# column constant within a class (every Chinstrap penguin lives on Dream) leaves it
# singular, and a few dozen rows estimate 45 covariances poorly. 0.1 to 0.2 flag the
# same rows on the penguins (bench/estimate.py's drifted windows: 77-81% either way).
SHRINKAGE = 0.1


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


@dataclass(frozen=True)
class InputSupport:
    """Where the training rows lie in the model's feature space (see the module).

    `means` and `precisions` (inverse shrunk covariances) per class of `classes`, in
    the space of `transform` (the features transform's description, as
    `inference.features.FeatureTransform.describe` writes it); `threshold` the distance
    past which a row is outside, the `quantile` of the `rows` out-of-fold distances;
    `class_share` each class's share of the training rows; `outside_rows` and
    `outside_accuracy` the out-of-fold rows past the threshold and how often the fold
    models were right on them (too few to stand for shifted inputs: shown, not used).
    """

    classes: list[str]
    class_share: list[float]
    means: list[list[float]]
    precisions: list[list[list[float]]]
    threshold: float
    quantile: float
    rows: int
    outside_rows: int
    outside_accuracy: float | None
    transform: dict[str, Any]

    def distances(self, x: Any) -> np.ndarray:
        """Each row's Mahalanobis distance to the nearest class (rows of `x` are in
        the model's feature space)."""
        return class_distances(np.asarray(self.means), np.asarray(self.precisions), x)

    def outside(self, x: Any) -> np.ndarray:
        """Whether each row of `x` lies outside the support."""
        return self.distances(x) > self.threshold

    def right_if_outside(self, predictions: Any) -> np.ndarray:
        """P(correct) of answers given outside the support: there the answer is taken
        to say nothing of the label, so it is right as often as its class occurs,
        its share of the training rows (0 for a class the model does not know)."""
        share = dict(zip(self.classes, self.class_share, strict=True))
        return np.array([share.get(str(answer), 0.0) for answer in predictions], dtype=float)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSupport:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def fit_class_support(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each class's mean and precision (inverse covariance shrunk by `SHRINKAGE`
    toward the identity times the mean within-class variance), for the classes
    0..max(y) of integer labels `y`; a label with no row gets a NaN mean (no row is
    near it)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y).reshape(-1).astype(int)
    classes, width = int(y.max()) + 1, x.shape[1]
    means = np.full((classes, width), np.nan)
    scatter = np.zeros((classes, width, width))
    for label in np.unique(y):
        rows = x[y == label]
        means[label] = rows.mean(axis=0)
        centred = rows - means[label]
        scatter[label] = centred.T @ centred / max(len(rows) - 1, 1)
    pooled = np.trace(scatter.sum(axis=0)) / max(width * len(np.unique(y)), 1)
    scale = pooled if pooled > 0 else 1.0  # all rows alike: any scale will do
    identity = np.eye(width) * scale
    precisions = np.stack(
        [np.linalg.inv((1 - SHRINKAGE) * c + SHRINKAGE * identity) for c in scatter]
    )
    return means, precisions


def class_distances(means: np.ndarray, precisions: np.ndarray, x: Any) -> np.ndarray:
    """Each row's Mahalanobis distance to the nearest class (a class with a NaN mean
    is infinitely far)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    nearest = np.full(len(x), np.inf)
    for mean, precision in zip(means, precisions, strict=True):
        if np.isnan(mean).any():
            continue
        centred = x - mean
        squared = np.einsum("ij,jk,ik->i", centred, precision, centred)
        nearest = np.minimum(nearest, np.sqrt(np.maximum(squared, 0.0)))
    return nearest
