"""Cross-validation helpers: fold splits and score summaries, on numpy alone.

scikit-learn's splitters would cost the step that only splits indices ~4 s of imports.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def stratified_folds(
    labels: Any, folds: int, seed: int | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split row indices into `folds` (train, test) pairs with class proportions kept.

    Each class's rows are shuffled and dealt round-robin to the folds, so every test
    set sees every class that has at least `folds` rows, and every row is tested once.
    """
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"Cross-validation needs at least 2 folds, got {folds}.")
    if len(labels) < folds:
        raise ValueError(f"Cannot split {len(labels)} rows into {folds} folds.")
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=int)
    offset = 0
    for label in sorted(set(labels.tolist()), key=str):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        # Continue the round-robin where the previous class stopped, to balance sizes.
        assignment[rows] = (np.arange(len(rows)) + offset) % folds
        offset += len(rows)
    # int32 while it fits: the folds are artifacts, stored once by `cross_validation`
    # and again, split, by every fold task; half the bytes at a million rows.
    everything = np.arange(len(labels), dtype=np.int32 if len(labels) < 2**31 else np.int64)
    return [
        (everything[assignment != fold], everything[assignment == fold]) for fold in range(folds)
    ]


def summarize(values: list[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation, as plain floats."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std())


def summarize_folds(scores: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and std of the folds' `accuracy` and `loss`, in that order."""
    accuracy, accuracy_std = summarize([fold["accuracy"] for fold in scores])
    loss, loss_std = summarize([fold["loss"] for fold in scores])
    return {"accuracy": accuracy, "accuracy_std": accuracy_std, "loss": loss, "loss_std": loss_std}


# Keras clips probabilities to [EPSILON, 1 - EPSILON] before taking their logarithm.
EPSILON = 1e-7


def classification_scores(probabilities: Any, labels: Any) -> tuple[float, float, np.ndarray]:
    """Loss, accuracy and predicted class indices of class `probabilities` for `labels`.

    The loss is Keras's sparse categorical cross-entropy, so these are the figures
    `model.evaluate` reports, computed from the probabilities the server would return.
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    labels = np.asarray(labels, dtype=int).reshape(-1)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(
            f"Expected one row of class probabilities per label, got {probabilities.shape} "
            f"for {labels.shape[0]} labels."
        )
    normalised = probabilities / probabilities.sum(axis=1, keepdims=True)
    chosen = np.clip(normalised[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON)
    predictions = probabilities.argmax(axis=1)
    return float(-np.log(chosen).mean()), float((predictions == labels).mean()), predictions
