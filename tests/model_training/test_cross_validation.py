"""Tests for model_training.cross_validation: stratified folds and score summaries."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from model_training.cross_validation import (
    classification_scores,
    stratified_folds,
    summarize,
    summarize_folds,
)

# 41 rows, unbalanced classes, interleaved so that order says nothing about class.
LABELS = np.array(["a"] * 23 + ["b"] * 11 + ["c"] * 7)[np.random.default_rng(0).permutation(41)]


@pytest.mark.parametrize("folds", [2, 3, 5, 7])
def test_every_row_is_tested_exactly_once(folds: int) -> None:
    splits = stratified_folds(LABELS, folds, seed=1)
    assert len(splits) == folds
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested.tolist()) == list(range(len(LABELS)))


@pytest.mark.parametrize("folds", [2, 5])
def test_train_and_test_are_disjoint_and_complete(folds: int) -> None:
    for train, test in stratified_folds(LABELS, folds, seed=1):
        assert set(train.tolist()).isdisjoint(test.tolist())
        assert sorted([*train.tolist(), *test.tolist()]) == list(range(len(LABELS)))


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_class_proportions_are_kept(folds: int) -> None:
    totals = Counter(LABELS.tolist())
    for _, test in stratified_folds(LABELS, folds, seed=2):
        counts = Counter(LABELS[test].tolist())
        for label, total in totals.items():
            expected = total / folds
            assert abs(counts[label] - expected) < 1, (label, counts[label], expected)


def test_fold_sizes_are_balanced() -> None:
    sizes = [len(test) for _, test in stratified_folds(LABELS, 5, seed=3)]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == len(LABELS)


def test_deterministic_with_a_seed() -> None:
    first = stratified_folds(LABELS, 5, seed=11)
    second = stratified_folds(LABELS, 5, seed=11)
    for (train_a, test_a), (train_b, test_b) in zip(first, second, strict=True):
        np.testing.assert_array_equal(train_a, train_b)
        np.testing.assert_array_equal(test_a, test_b)


def test_different_seeds_give_different_folds() -> None:
    first = [test.tolist() for _, test in stratified_folds(LABELS, 5, seed=11)]
    second = [test.tolist() for _, test in stratified_folds(LABELS, 5, seed=12)]
    assert first != second


def test_accepts_plain_lists_of_integers() -> None:
    labels = [0, 1, 2] * 4
    splits = stratified_folds(labels, 4, seed=0)
    for _, test in splits:
        assert sorted(np.asarray(labels)[test].tolist()) == [0, 1, 2]


@pytest.mark.parametrize("folds", [1, 0, -3])
def test_needs_at_least_two_folds(folds: int) -> None:
    with pytest.raises(ValueError, match=f"at least 2 folds, got {folds}"):
        stratified_folds(LABELS, folds, seed=0)


def test_needs_at_least_as_many_rows_as_folds() -> None:
    with pytest.raises(ValueError, match="Cannot split 3 rows into 4 folds"):
        stratified_folds(["a", "b", "a"], 4, seed=0)


def test_summarize_mean_and_population_std() -> None:
    mean, std = summarize([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert std == pytest.approx(math.sqrt(1.25))
    assert type(mean) is float
    assert type(std) is float


def test_summarize_single_value() -> None:
    assert summarize([0.9]) == (0.9, 0.0)


def test_classification_scores_are_cross_entropy_and_accuracy() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1]])
    labels = np.array([[0], [1], [1]])  # (n, 1), as the target transformer gives them.
    loss, accuracy, predictions = classification_scores(probabilities, labels)
    assert loss == pytest.approx(-np.mean(np.log([0.7, 0.6, 0.4])))
    assert accuracy == pytest.approx(2 / 3)
    assert predictions.tolist() == [0, 1, 0]
    assert type(loss) is float and type(accuracy) is float


def test_classification_scores_clip_a_zero_probability_as_keras_does() -> None:
    loss, accuracy, _ = classification_scores(np.array([[1.0, 0.0]]), np.array([1]))
    assert loss == pytest.approx(-np.log(1e-7))
    assert accuracy == 0.0


def test_classification_scores_match_keras_evaluate() -> None:
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    from support.toy_models import evaluate_model

    from model_training.network import train_model

    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 4)).astype("float32")
    y = ((x[:, 0] > 0).astype("int64") + (x[:, 1] > 1)).reshape(-1, 1)
    model, _ = train_model(x, y, classes=3, epochs=2, batch_size=16, seed=1)
    keras_loss, keras_accuracy, keras_predictions = evaluate_model(model, x, y)
    loss, accuracy, predictions = classification_scores(model.predict_on_batch(x), y)
    assert loss == pytest.approx(keras_loss, rel=1e-4)
    assert accuracy == pytest.approx(keras_accuracy)
    np.testing.assert_array_equal(predictions, keras_predictions)


def test_classification_scores_refuse_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="one row of class probabilities per label"):
        classification_scores(np.ones((3, 2)) / 2, np.array([0, 1]))


def test_summarize_folds_orders_accuracy_before_loss() -> None:
    scores = [{"accuracy": 1.0, "loss": 0.1, "fold": 0}, {"accuracy": 0.5, "loss": 0.3, "fold": 1}]
    summary = summarize_folds(scores)
    assert list(summary) == ["accuracy", "accuracy_std", "loss", "loss_std"]
    assert summary["accuracy"] == pytest.approx(0.75)
    assert summary["accuracy_std"] == pytest.approx(0.25)
    assert summary["loss"] == pytest.approx(0.2)
    assert summary["loss_std"] == pytest.approx(0.1)
