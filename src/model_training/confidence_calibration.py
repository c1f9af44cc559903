"""The calibration of a version's confidences, fitted at registration and stored with it.

The training pipeline's fold tasks keep each unseen row's top-class confidence beside
its prediction; `average_scores` fits the map from confidence to P(correct) on all of
them (`out_of_fold_calibration`, see `common.calibration`), and `register` stores it
with the version (`log_calibration`: `calibration.json` on the version's run, its
calibration error as model-version tags), where monitoring finds it to estimate
accuracy before labels (`model_monitoring.performance_estimate`).

Beside it, the input support (`common.calibration.InputSupport`): each fold task measures
its unseen rows' distances to a support fitted on its training rows
(`fold_support_distances`), `average_scores` takes the threshold from them
(`support_evidence`), and `register` fits the support on every training row in the
final model's feature space (`fit_input_support`) and stores it with the calibration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from common.calibration import (
    CALIBRATION_ARTIFACT,
    SUPPORT_ARTIFACT,
    SUPPORT_QUANTILE,
    SUPPORT_TAG,
    Calibration,
    InputSupport,
    class_distances,
    fit_calibration,
    fit_class_support,
)


def top_confidences(probabilities: Any) -> np.ndarray:
    """Each row's confidence as the server returns it: its largest class probability."""
    return np.asarray(probabilities, dtype=float).max(axis=1)


def out_of_fold_calibration(
    confidences: Sequence[Any], correct: Any, folds: Sequence[int]
) -> Calibration:
    """The calibration of the folds' out-of-fold answers: `confidences` one array per
    fold (in the order of `folds`), `correct` whether each answer was right, in the
    same order."""
    fold_of_row = np.concatenate(
        [np.full(len(values), fold) for fold, values in zip(folds, confidences, strict=True)]
    )
    return fit_calibration(np.concatenate(confidences), correct, fold_of_row)


def fold_support_distances(x_train: Any, y_train: Any, x_test: Any) -> np.ndarray:
    """The distances of a fold's unseen rows to the support of its training rows (both
    in the fold's feature space)."""
    return class_distances(*fit_class_support(x_train, y_train), x_test)


def support_evidence(distances: Any, correct: Any) -> dict[str, Any]:
    """The threshold of the out-of-fold `distances` (`SUPPORT_QUANTILE`), how many rows
    pass it and how often their answers were right (`correct`, in the same order)."""
    distances = np.asarray(distances, dtype=float).reshape(-1)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    threshold = float(np.quantile(distances, SUPPORT_QUANTILE))
    outside = distances > threshold
    return {
        "threshold": threshold,
        "quantile": SUPPORT_QUANTILE,
        "rows": len(distances),
        "outside_rows": int(outside.sum()),
        "outside_accuracy": float(correct[outside].mean()) if outside.any() else None,
    }


def fit_input_support(
    x: Any, y: Any, classes: Sequence[str], evidence: dict[str, Any], files: dict[str, Any]
) -> dict[str, Any] | None:
    """The support of the training rows `x` (the final model's feature space, labels
    `y` indexing `classes`) as `InputSupport.as_dict()`, with the threshold of
    `support_evidence`; None when the model's artifact `files`
    (`model_training.packaging.transformer_files`) lack the compiled features transform
    (`transform.json`), whose description places captured rows in that space."""
    import json

    if "transform" not in files:
        return None
    _, transform = files["transform"]
    labels = np.asarray(y).reshape(-1).astype(int)
    means, precisions = fit_class_support(x, labels)
    counts = np.bincount(labels, minlength=len(classes))
    return InputSupport(
        classes=[str(name) for name in classes],
        class_share=(counts / counts.sum()).tolist(),
        means=means.tolist(),
        precisions=precisions.tolist(),
        transform=json.loads(transform),
        **evidence,
    ).as_dict()


def log_calibration(calibration: dict[str, Any], support: dict[str, Any] | None = None) -> None:
    """Store the calibration (`Calibration.as_dict()`) and the input support, if any
    (`InputSupport.as_dict()`), on the active MLflow run."""
    import mlflow

    mlflow.log_dict(calibration, CALIBRATION_ARTIFACT)
    if support is not None:
        mlflow.log_dict(support, SUPPORT_ARTIFACT)


def calibration_tags(
    calibration: dict[str, Any] | None, support: dict[str, Any] | None = None
) -> dict[str, str]:
    """The model-version tags saying a calibration (its error) and an input support
    (its threshold) are stored."""
    tags = {} if calibration is None else Calibration.from_dict(calibration).tags()
    if support is not None:
        tags[SUPPORT_TAG] = f"{support['threshold']:.4f}"
    return tags
