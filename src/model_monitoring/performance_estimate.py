"""Accuracy estimated before labels arrive, from the model's own confidences (CBPE),
where the inputs are like those it was trained on.

Confidence-based performance estimation, as NannyML's CBPE does it for accuracy: each
captured answer is right with probability p_i, its top-class confidence mapped through
the version's calibration (`common.calibration`, fitted at registration on
out-of-fold predictions). The expected accuracy of a window of n answers is the mean
of the p_i; the number right is a sum of independent Bernoulli(p_i), so the realised
accuracy lies around it with standard deviation sqrt(sum p_i (1 - p_i)) / n, and the
band is that times `BAND_Z` either side, clipped to [0, 1]. The band covers the
window's sampling noise, not an error of the calibration itself.

Confidences alone miss inputs unlike any the model saw, where it can be sure and
wrong. So each answer's input is also placed in the model's feature space and
measured against the input support stored with the version (`InputSupport`): an
answer outside it gets the probability of a guess that knows nothing of the input,
the training share of the class it named, instead of its calibrated confidence; the
estimate reports how many answers were outside (`Estimate.outside_support`).

When it is still blind: a shift that keeps the inputs inside the training support
while the model stays confident and wrong there (for the penguins: an Adelie's bill
grown to a Chinstrap's, on Dream where Chinstraps live), and a change in how labels
relate to inputs (concept drift); only labels show those. A version registered
without a calibration is estimated from its raw confidences, and one without an
input support (registered before it existed) from its confidences alone: each says so.

NannyML itself is not used: version 0.13.1 (the newest) cannot be installed beside
this project's pins (its s3fs needs an aiobotocore whose botocore excludes the
botocore of boto3 1.44.8, given Evidently's fsspec), supports Python < 3.13 only
while this project allows 3.13, and brings some fifty packages (FLAML, LightGBM,
plotly < 6, usage analytics) for what is a mean and a variance here.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from common.calibration import (
    CALIBRATION_ARTIFACT,
    CALIBRATION_TAGS,
    SUPPORT_ARTIFACT,
    SUPPORT_TAG,
    Calibration,
    InputSupport,
)

if TYPE_CHECKING:
    import pandas as pd

BAND_Z = 1.96  # a 95% band, for a sum of many independent answers


@dataclass(frozen=True)
class Estimate:
    """The expected accuracy of `rows` answers and its band; `calibrated` is False when
    the raw confidences were used; `outside_support` the answers whose input lay outside
    the training support, None when the version has no support to check (confidences
    only)."""

    accuracy: float
    low: float
    high: float
    standard_error: float
    rows: int
    calibrated: bool
    outside_support: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def figures(self) -> dict[str, float]:
        """The estimate as MLflow metrics."""
        figures = {
            "estimated_accuracy": self.accuracy,
            "estimated_accuracy_low": self.low,
            "estimated_accuracy_high": self.high,
            "estimate_rows": float(self.rows),
        }
        if self.outside_support is not None:
            figures["estimate_outside_support_share"] = self.outside_support / self.rows
        return figures

    def support_sentence(self) -> str:
        """What the estimate made of the inputs."""
        if self.outside_support is None:
            return "no input support stored with this version: confidences only (plain CBPE)"
        return (
            f"{self.outside_support} of {self.rows} answers "
            f"({self.outside_support / self.rows:.1%}) outside the training support, "
            "counted as guesses"
        )

    def summary(self) -> str:
        how = "calibrated" if self.calibrated else "raw, uncalibrated"
        return (
            f"{self.accuracy:.3f} [{self.low:.3f}, {self.high:.3f}] on {self.rows} answers "
            f"({how} confidences; {self.support_sentence()})"
        )


def estimate_accuracy(
    confidences: Any, calibration: Calibration | None, outside: Any = None
) -> Estimate | None:
    """The expected accuracy of answers given with `confidences`; None without any.

    `outside` (from `right_if_outside`), per answer: its probability of being right if
    its input lay outside the training support, NaN if inside; None: not checked.
    """
    values = np.asarray(confidences, dtype=float).reshape(-1)
    answered = ~np.isnan(values)
    values = values[answered]
    if not len(values):
        return None
    right = calibration.apply(values) if calibration is not None else np.clip(values, 0, 1)
    outside_support = None
    if outside is not None:
        guesses = np.asarray(outside, dtype=float).reshape(-1)[answered]
        beyond = ~np.isnan(guesses)
        right = np.where(beyond, guesses, right)
        outside_support = int(beyond.sum())
    rows = len(right)
    accuracy = float(right.mean())
    standard_error = math.sqrt(float((right * (1 - right)).sum())) / rows
    return Estimate(
        accuracy=accuracy,
        low=max(0.0, accuracy - BAND_Z * standard_error),
        high=min(1.0, accuracy + BAND_Z * standard_error),
        standard_error=standard_error,
        rows=rows,
        calibrated=calibration is not None,
        outside_support=outside_support,
    )


def right_if_outside(recent: pd.DataFrame, support: InputSupport | None) -> np.ndarray | None:
    """Per captured answer of `recent` (its feature columns and `prediction`): its
    probability of being right if its input lies outside `support`, NaN if inside;
    None without a support, or one whose features transform cannot be read back.

    A row the version's transform refuses (a category it never saw) is outside.
    """
    from inference.features import FeatureTransform

    if support is None:
        return None
    transform = FeatureTransform.from_description(support.transform)
    if transform is None:
        return None
    columns, kept, _ = transform.validate_rows(recent)
    outside = np.ones(len(recent), dtype=bool)
    if len(kept):
        outside[kept] = support.outside(transform.transform(columns))
    return np.where(outside, support.right_if_outside(recent["prediction"]), np.nan)


def estimate_version(model_name: str, version: str | None, recent: pd.DataFrame) -> Estimate | None:
    """The estimate of `version`'s `recent` captured answers, through the calibration
    and the input support stored with it (each where there is one)."""
    calibration = stored_calibration(model_name, version)
    outside = right_if_outside(recent, stored_support(model_name, version))
    return estimate_accuracy(recent["confidence"].to_numpy(dtype=float), calibration, outside)


def stored_calibration(model_name: str, version: str | None) -> Calibration | None:
    """The calibration stored with `version` at registration; None for a version
    registered without one (older code, or registered some other way)."""
    stored = _stored(model_name, version, CALIBRATION_TAGS[-1], CALIBRATION_ARTIFACT)
    return None if stored is None else Calibration.from_dict(stored)


def stored_support(model_name: str, version: str | None) -> InputSupport | None:
    """The input support stored with `version` at registration; None for a version
    registered without one (before it existed, or without a compiled transform)."""
    stored = _stored(model_name, version, SUPPORT_TAG, SUPPORT_ARTIFACT)
    return None if stored is None else InputSupport.from_dict(stored)


def _stored(model_name: str, version: str | None, tag: str, artifact: str) -> dict | None:
    """The JSON `artifact` on `version`'s run when its `tag` says it is there."""
    if version is None:
        return None
    import mlflow
    from mlflow.exceptions import MlflowException

    from common.registry import quiet_downloads

    try:
        registered = mlflow.MlflowClient().get_model_version(model_name, version)
        # The tags say whether there is one: no failed download to find out.
        if not registered.run_id or tag not in registered.tags:
            return None
        with quiet_downloads():  # no progress bar in the monitoring log
            text = mlflow.artifacts.load_text(f"runs:/{registered.run_id}/{artifact}")
    except (MlflowException, OSError):
        return None
    return json.loads(text)
