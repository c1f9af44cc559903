"""The calibration of a version's confidences, fitted at registration and stored with it.

The training pipeline's fold tasks keep each unseen row's top-class confidence beside
its prediction; `average_scores` fits the map from confidence to P(correct) on all of
them (`out_of_fold_calibration`, see `common.calibration`), and `register` stores it
with the version (`log_calibration`: `calibration.json` on the version's run, its
calibration error as model-version tags), where monitoring finds it to estimate
accuracy before labels (`model_monitoring.performance_estimate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from common.calibration import CALIBRATION_ARTIFACT, Calibration, fit_calibration


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


def log_calibration(calibration: dict[str, Any]) -> None:
    """Store the calibration (`Calibration.as_dict()`) on the active MLflow run."""
    import mlflow

    mlflow.log_dict(calibration, CALIBRATION_ARTIFACT)


def calibration_tags(calibration: dict[str, Any] | None) -> dict[str, str]:
    """The model-version tags saying a calibration is stored, and its error."""
    return {} if calibration is None else Calibration.from_dict(calibration).tags()
