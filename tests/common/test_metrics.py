"""Tests for common.metrics: the one confusion matrix, of training and of monitoring."""

from __future__ import annotations

import numpy as np

from common.metrics import confusion_matrix


def test_confusion_matrix_counts_pairs() -> None:
    actual = [0, 0, 1, 2, 2, 2]
    predicted = [0, 1, 1, 2, 2, 0]
    matrix = confusion_matrix(actual, predicted, classes=3)
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.sum() == len(actual)


def test_confusion_matrix_has_rows_for_unseen_classes() -> None:
    matrix = confusion_matrix(np.array([1, 1]), np.array([1, 1]), classes=4)
    assert matrix.shape == (4, 4)
    assert matrix[1, 1] == 2
    assert matrix.sum() == 2


def test_confusion_matrix_accepts_labels_shaped_like_the_target_transformer() -> None:
    actual = np.array([[0], [1], [1], [2]])
    matrix = confusion_matrix(actual, np.array([0, 1, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
