"""The training pipeline's cross-validation folds, transformed once for every trial.

The folds are `model_training.cross_validation.stratified_folds` with the seed the
training pipeline gives it, so a trial is scored on exactly the rows the training
pipeline's folds test. A fold's features transformer does not depend on any
hyperparameter: it is fitted once here, with numpy into the compiled transform the
model server runs (scikit-learn for data the numpy fit cannot vouch for), as the
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

    splits = stratified_folds(data[schema.target], folds, seed=seed)
    arrays, classes = [], []
    for fold, (train_indices, test_indices) in enumerate(splits):
        train, test = data.iloc[train_indices], data.iloc[test_indices]
        transformed = _with_numpy(data, train, test, schema) or _with_scikit_learn(
            data, train, test, schema
        )
        classes, (x_train, y_train, x_test, y_test) = transformed
        arrays.append(FoldArrays(fold, x_train, y_train, x_test, y_test))
    return arrays, classes


def _with_numpy(
    data: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, schema: DatasetSchema
) -> tuple[list[str], tuple[np.ndarray, ...]] | None:
    """(classes, (x_train, y_train, x_test, y_test)) through the compiled transform."""
    from inference.features import FeatureTransform
    from model_training.preprocessing import (
        class_indices,
        feature_arrays,
        fit_class_names,
        fit_feature_blocks,
    )

    blocks = fit_feature_blocks(train, schema)
    # The classes come from the whole dataset: a rare class missing from a fold's
    # training rows must still be encodable in its test rows.
    classes = fit_class_names(data[schema.target])
    if blocks is None or classes is None:
        return None
    compiled = FeatureTransform.from_blocks(blocks)

    def x_and_y(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        x = compiled.transform(feature_arrays(rows, schema))
        return x, class_indices(rows[schema.target], classes)

    return classes, (*x_and_y(train), *x_and_y(test))


def _with_scikit_learn(
    data: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, schema: DatasetSchema
) -> tuple[list[str], tuple[np.ndarray, ...]]:
    """As `_with_numpy`, with the transformers the final model ships."""
    from model_training.preprocessing import (
        fit_features_transformer,
        fit_target_transformer,
        transform,
    )

    features_transformer = fit_features_transformer(train, schema)
    target_transformer = fit_target_transformer(data, schema)
    classes = [str(name) for name in target_transformer.categories_[0]]
    return classes, (
        *transform(train, schema, features_transformer, target_transformer),
        *transform(test, schema, features_transformer, target_transformer),
    )
