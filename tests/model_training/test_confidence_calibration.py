"""model_training.confidence_calibration: the calibration fitted at registration on the
out-of-fold predictions, and stored with the version (checked on the session's run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.calibration import (
    CALIBRATION_ARTIFACT,
    CALIBRATION_TAGS,
    SUPPORT_ARTIFACT,
    SUPPORT_QUANTILE,
    SUPPORT_TAG,
    Calibration,
    InputSupport,
)
from model_training.confidence_calibration import (
    calibration_tags,
    fit_input_support,
    fold_support_distances,
    out_of_fold_calibration,
    support_evidence,
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
    assert f"raw confidences {stored.ece_raw:.3f}" in register["model_card"].data


def test_the_registered_version_carries_its_input_support(
    training_run: Any, mlflow_client: Any, tmp_path: Path
) -> None:
    """Fitted on every training row, its threshold from every out-of-fold row's
    distance; stored on the version's run, announced by its tag, on its model card."""
    import json

    register = training_run["register"].task
    stored = InputSupport.from_dict(register["input_support"].data)
    folds = list(training_run["evaluate_fold"])
    distances = np.concatenate([t["test_support_distances"].data for t in folds])
    assert stored.rows == len(distances) == len(training_run["start"].task["data"].data)
    assert stored.threshold == pytest.approx(np.quantile(distances, SUPPORT_QUANTILE))
    assert stored.classes == register["class_names"].data
    assert len(stored.means[0]) == register["x"].data.shape[1]
    registered = mlflow_client.get_model_version("penguins", register["model_version"].data)
    assert registered.tags[SUPPORT_TAG] == f"{stored.threshold:.4f}"
    path = mlflow_client.download_artifacts(registered.run_id, SUPPORT_ARTIFACT, str(tmp_path))
    assert InputSupport.from_dict(json.loads(Path(path).read_text())) == stored
    assert f"farther than **{stored.threshold:.3f}**" in register["model_card"].data


def test_support_evidence_worked_example() -> None:
    # 100 distances 1..100: the 99% quantile is 99.01 (linear), only 100 passes it.
    evidence = support_evidence(np.arange(1.0, 101.0), [True] * 99 + [False])
    assert evidence == {
        "threshold": pytest.approx(99.01),
        "quantile": SUPPORT_QUANTILE,
        "rows": 100,
        "outside_rows": 1,
        "outside_accuracy": 0.0,
    }


def gaussian_classes(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes in four dimensions, each a correlated Gaussian around its mean."""
    labels = rng.integers(0, 3, rows)
    mixing = np.array([[1.0, 0.6, 0, 0], [0, 0.8, 0, 0], [0, 0, 1.0, 0.3], [0, 0, 0, 0.5]])
    centres = np.array([[0.0, 0, 0, 0], [4.0, 0, 0, 0], [0.0, 4, 2, 0]])
    return centres[labels] + rng.normal(size=(rows, 4)) @ mixing, labels


def test_the_out_of_fold_threshold_flags_about_one_new_row_in_a_hundred_and_shifted_ones() -> None:
    """A synthetic case: the threshold of 5 folds' distances lets about 99% of new rows
    from the training distribution in, and keeps out most rows with one feature shifted
    by five of its standard deviations within a class (`--drift` shifts the penguins'
    bill length by three to four of them)."""
    rng = np.random.default_rng(11)
    x, y = gaussian_classes(rng, 2000)
    folds = np.arange(2000) % 5
    distances = np.empty(2000)
    for fold in range(5):
        held_out = folds == fold
        distances[held_out] = fold_support_distances(x[~held_out], y[~held_out], x[held_out])
    evidence = support_evidence(distances, np.ones(2000, dtype=bool))
    transform = ("transform.json", b'{"format": 1}')
    support = InputSupport.from_dict(
        fit_input_support(x, y, ["a", "b", "c"], evidence, {"transform": transform})
    )
    assert support.class_share == pytest.approx(np.bincount(y) / 2000)
    assert support.transform == {"format": 1}
    new, _ = gaussian_classes(rng, 20000)
    assert 0.005 <= support.outside(new).mean() <= 0.02
    shifted = new + np.array([0.0, 0.0, 0.0, 5 * 0.5])
    assert support.outside(shifted).mean() > 0.9


def test_without_a_compiled_transform_no_support_is_fitted() -> None:
    evidence = support_evidence([1.0, 2.0], [True, True])
    assert fit_input_support(np.eye(2), [0, 1], ["a", "b"], evidence, {}) is None
    assert calibration_tags(None, None) == {}
    assert calibration_tags(None, {"threshold": 3.14159}) == {SUPPORT_TAG: "3.1416"}
