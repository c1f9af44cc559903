"""Accuracy estimated before labels arrive, from the model's own confidences (CBPE).

Confidence-based performance estimation, as NannyML's CBPE does it for accuracy: each
captured answer is right with probability p_i, its top-class confidence mapped through
the version's calibration (`common.calibration`, fitted at registration on
out-of-fold predictions). The expected accuracy of a window of n answers is the mean
of the p_i; the number right is a sum of independent Bernoulli(p_i), so the realised
accuracy lies around it with standard deviation sqrt(sum p_i (1 - p_i)) / n, and the
band is that times `BAND_Z` either side, clipped to [0, 1]. The band covers the
window's sampling noise, not an error of the calibration itself.

When it is blind: the estimate trusts the confidences. Inputs that move where the
model is still confident (and wrong), or labels whose relation to the inputs changes
(concept drift), leave it where it was; only labels show those. A version registered
without a calibration is estimated from its raw confidences, and says so.

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
from typing import Any

import numpy as np

from common.calibration import CALIBRATION_ARTIFACT, CALIBRATION_TAGS, Calibration

BAND_Z = 1.96  # a 95% band, for a sum of many independent answers


@dataclass(frozen=True)
class Estimate:
    """The expected accuracy of `rows` answers and its band; `calibrated` is False when
    the raw confidences were used."""

    accuracy: float
    low: float
    high: float
    standard_error: float
    rows: int
    calibrated: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def figures(self) -> dict[str, float]:
        """The estimate as MLflow metrics."""
        return {
            "estimated_accuracy": self.accuracy,
            "estimated_accuracy_low": self.low,
            "estimated_accuracy_high": self.high,
            "estimate_rows": float(self.rows),
        }

    def summary(self) -> str:
        how = "calibrated" if self.calibrated else "raw, uncalibrated"
        return (
            f"{self.accuracy:.3f} [{self.low:.3f}, {self.high:.3f}] on {self.rows} answers "
            f"({how} confidences)"
        )


def estimate_accuracy(confidences: Any, calibration: Calibration | None) -> Estimate | None:
    """The expected accuracy of answers given with `confidences`; None without any."""
    values = np.asarray(confidences, dtype=float).reshape(-1)
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    right = calibration.apply(values) if calibration is not None else np.clip(values, 0, 1)
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
    )


def stored_calibration(model_name: str, version: str | None) -> Calibration | None:
    """The calibration stored with `version` at registration; None for a version
    registered without one (older code, or registered some other way)."""
    if version is None:
        return None
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        registered = mlflow.MlflowClient().get_model_version(model_name, version)
        # The tags say whether there is one: no failed download to find out.
        if not registered.run_id or CALIBRATION_TAGS[-1] not in registered.tags:
            return None
        text = mlflow.artifacts.load_text(f"runs:/{registered.run_id}/{CALIBRATION_ARTIFACT}")
    except (MlflowException, OSError):
        return None
    return Calibration.from_dict(json.loads(text))
