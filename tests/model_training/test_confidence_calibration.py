"""model_training.confidence_calibration: the calibration fitted at registration on the
out-of-fold predictions, and stored with the version (checked on the session's run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.calibration import CALIBRATION_ARTIFACT, CALIBRATION_TAGS, Calibration
from model_training.confidence_calibration import (
    calibration_tags,
    out_of_fold_calibration,
    top_confidences,
)


def test_the_confidence_is_the_largest_class_probability() -> None:
    probabilities = [[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]]
    np.testing.assert_allclose(top_confidences(probabilities), [0.7, 0.5])


def test_out_of_fold_answers_of_every_fold_are_fitted_and_cross_fitted() -> None:
    rng = np.random.default_rng(5)
    per_fold = [rng.uniform(0.5, 1.0, 400) for _ in range(3)]
    correct = rng.random(1200) < np.concatenate(per_fold)
    calibration = out_of_fold_calibration(per_fold, correct, [0, 1, 2])
    assert calibration.rows == 1200
    assert calibration.accuracy == pytest.approx(correct.mean())
    assert calibration.ece is not None and calibration.ece < 0.06


def test_the_tags_say_a_calibration_is_stored() -> None:
    calibration = out_of_fold_calibration([np.array([0.9, 0.8])], [True, False], [0])
    assert calibration.ece is None  # one fold: nothing to cross-fit
    # |0.9 - 1| and |0.8 - 0|, each in a bin of its own, over 2 rows.
    tags = calibration_tags(calibration.as_dict())
    assert tags == {"calibration_ece": "", "calibration_ece_raw": "0.4500", "calibration_rows": "2"}
    assert calibration_tags(None) == {}


def test_the_registered_version_carries_its_calibration(
    training_run: Any, mlflow_client: Any, tmp_path: Path
) -> None:
    """Fitted on every out-of-fold prediction of the run, stored on the version's run,
    announced by its tags, shown on its model card."""
    import json

    register = training_run["register"].task
    version = register["model_version"].data
    stored = Calibration.from_dict(register["calibration"].data)
    folds = list(training_run["evaluate_fold"])
    assert stored.rows == sum(len(t["test_confidences"].data) for t in folds)
    assert stored.rows == len(training_run["start"].task["data"].data)
    registered = mlflow_client.get_model_version("penguins", version)
    assert set(CALIBRATION_TAGS) <= set(registered.tags)
    assert registered.tags["calibration_rows"] == str(stored.rows)
    path = mlflow_client.download_artifacts(registered.run_id, CALIBRATION_ARTIFACT, str(tmp_path))
    assert Calibration.from_dict(json.loads(Path(path).read_text())) == stored
    assert "## Confidence calibration" in register["model_card"].data
    assert f"raw confidences {stored.ece_raw:.4f}" in register["model_card"].data
