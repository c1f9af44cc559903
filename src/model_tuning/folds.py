"""The training pipeline's cross-validation folds, transformed once for every trial.

The folds are `model_training.cross_validation.stratified_folds` with the seed the
training pipeline gives it, so a trial is scored on exactly the rows the training
pipeline's folds test. A fold's features transformer does not depend on any
hyperparameter: it is fitted once here, by `model_training.fold_transform` as the
training pipeline's `transform_fold` does, and every trial trains on the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from common.data import DatasetSchema


@dataclass(frozen=True)
class FoldArrays:
    """One fold's transformed training and test rows; `y` holds class indices (n, 1)."""

    fold: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def transformed_folds(
    data: pd.DataFrame, schema: DatasetSchema, folds: int, seed: int | None
) -> tuple[list[FoldArrays], list[str]]:
    """The `folds` stratified folds of `data` as arrays, and the class names."""
    from model_training.cross_validation import stratified_folds
    from model_training.fold_transform import transform_fold

    splits = stratified_folds(data[schema.target], folds, seed=seed)
    arrays, classes = [], []
    for fold, (train_indices, test_indices) in enumerate(splits):
        rows = transform_fold(data, data.iloc[train_indices], data.iloc[test_indices], schema)
        classes = rows.classes
        arrays.append(FoldArrays(fold, rows.x_train, rows.y_train, rows.x_test, rows.y_test))
    return arrays, classes
