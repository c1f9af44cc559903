"""The evidence the promotion gate weighs: labelled captures scored by both versions, or
the versions' cross-validated scores.

- Labelled production captures are read from the backend (the newest `EVIDENCE_ROWS`)
  and scored by both versions in this process, through the server's own validation and
  forward pass (`inference.scorer`), then compared pair by pair (`promotion.rule`).
- Cross-validated scores are the tags the training pipeline sets on a version, or its
  training run's metrics for an older version.

Which of them decides is `promotion.gate`'s business; this module only gathers them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.registry import download_model
from inference.capture import GROUND_TRUTH
from promotion.errors import PromotionError
from promotion.rule import PairedComparison, compare_paired

if TYPE_CHECKING:
    import pandas as pd

    from backends.base import Backend
    from common.settings import PromotionSettings
    from inference.scorer import Scorer

# The newest labelled captures compared at most: enough for a tight paired test, and
# the size the comparison's speed target is set for (bench/comparison.py).
EVIDENCE_ROWS = 5000


@dataclass(frozen=True)
class CrossValidated:
    """A version's cross-validated accuracy, and where it was read."""

    accuracy: float
    std: float | None
    source: str  # "tags" or "training run"

    def describe(self) -> str:
        spread = "" if self.std is None else f" ± {self.std:.3f}"
        return f"{self.accuracy:.3f}{spread}"


def cross_validated_scores(client: Any, name: str, version: str) -> CrossValidated | None:
    """Version `version`'s cross-validated accuracy, or None when nothing recorded it.

    The training pipeline tags versions with `cv_accuracy` and `cv_accuracy_std`; older
    versions have only their training run's `cross_validation_accuracy` metrics.
    """
    from mlflow.exceptions import MlflowException

    model_version = client.get_model_version(name, version)
    tags = model_version.tags or {}
    try:
        if "cv_accuracy" in tags:
            std = tags.get("cv_accuracy_std")
            return CrossValidated(float(tags["cv_accuracy"]), _number(std), "tags")
    except ValueError:
        pass  # A tag someone wrote by hand; the run's metrics may still be there.
    if not model_version.run_id:
        return None
    try:
        metrics = client.get_run(model_version.run_id).data.metrics
    except MlflowException:
        return None
    if "cross_validation_accuracy" not in metrics:
        return None
    return CrossValidated(
        float(metrics["cross_validation_accuracy"]),
        _number(metrics.get("cross_validation_accuracy_std")),
        "training run",
    )


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def labelled_captures(backend: Backend, settings: PromotionSettings) -> pd.DataFrame | None:
    """The newest labelled captures the backend holds, as many as a comparison uses."""
    from backends.base import BackendError

    try:
        return backend.load(limit=max(settings.min_rows, EVIDENCE_ROWS), labeled_only=True)
    except BackendError as error:
        raise PromotionError(f"Reading the labelled captures failed: {error}") from None


def prepare_scoring() -> None:
    """Import what scoring captures needs, so that its cost is paid (and timed) apart.

    The scoring path (`inference.scorer`) and what unpickling a features transformer
    needs (scikit-learn). Models logged with their `forward` artifact load without
    Keras; an older one imports Keras itself when `load_scorer` loads it.
    """
    import sklearn.compose
    import sklearn.impute
    import sklearn.pipeline
    import sklearn.preprocessing  # noqa: F401

    import inference.scorer  # noqa: F401


def predict_captures(scorer: Scorer, captures: pd.DataFrame) -> list[str]:
    """What `scorer` predicts for the captured inputs, validated as the server does."""
    present = [name for name in scorer.features.columns if name in captures.columns]
    columns = scorer.features.validate(captures[present])
    predictions, _ = scorer.score(columns)
    return [str(prediction) for prediction in predictions]


@dataclass(frozen=True)
class PairedRun:
    """A paired comparison on captures and where its time went (seconds per phase)."""

    comparison: PairedComparison
    seconds: dict[str, float]


def compare_on_captures(
    champion_uri: str, challenger_uri: str, captures: pd.DataFrame, directory: str | Path
) -> PairedRun:
    """Score `captures` (with their ground truth) with both models; compare them pair by pair.

    Each model is downloaded into `directory` and loaded with `inference.scorer`: the
    validation, transform and forward pass the server runs, without a server.
    """
    if GROUND_TRUTH not in captures.columns or captures[GROUND_TRUTH].isna().any():
        raise ValueError("every capture compared needs its ground truth (label them first).")
    from inference.scorer import load_scorer

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    directories = {
        role: download_model(uri, Path(directory) / role)
        for role, uri in (("champion", champion_uri), ("challenger", challenger_uri))
    }
    seconds["download"] = time.perf_counter() - started
    mark = time.perf_counter()
    scorers = {role: load_scorer(path) for role, path in directories.items()}
    seconds["load"] = time.perf_counter() - mark
    mark = time.perf_counter()
    predictions = {role: predict_captures(scorer, captures) for role, scorer in scorers.items()}
    seconds["score"] = time.perf_counter() - mark
    mark = time.perf_counter()
    truth = [str(label) for label in captures[GROUND_TRUTH]]
    comparison = compare_paired(truth, predictions["champion"], predictions["challenger"])
    seconds["compare"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    return PairedRun(comparison, seconds)
