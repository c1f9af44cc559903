"""One cross-validation fold's rows as model inputs: the features transformer fitted on
the fold's training rows, both sides transformed.

Fitted with numpy into the compiled transform the model server runs, equal to what
scikit-learn fits (`model_training.preprocessing.fit_feature_blocks`), so the task that
calls this never imports scikit-learn; data the numpy fit cannot vouch for is left to
scikit-learn's transformers, the ones the final model ships. The training pipeline's
folds and the tuning stage's trials both transform their folds here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from common.data import DatasetSchema


@dataclass(frozen=True)
class TransformedFold:
    """A fold's arrays (`y` holds class indices, shaped (n, 1)), the class names, and
    which columns of x each raw feature became (for permutation importance)."""

    classes: list[str]
    feature_columns: dict[str, list[int]]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def transform_fold(
    data: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, schema: DatasetSchema
) -> TransformedFold:
    """`train` and `test` (rows of `data`) transformed by a transformer fitted on `train`.

    The classes come from the whole of `data`: a rare class missing from a fold's
    training rows must still be encodable in its test rows.
    """
    return _with_numpy(data, train, test, schema) or _with_scikit_learn(data, train, test, schema)


def _with_numpy(
    data: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, schema: DatasetSchema
) -> TransformedFold | None:
    """Through the compiled transform; None when the data is left to scikit-learn."""
    from inference.features import FeatureTransform
    from model_training.preprocessing import (
        block_columns,
        class_indices,
        feature_arrays,
        fit_class_names,
        fit_feature_blocks,
    )

    blocks = fit_feature_blocks(train, schema)
    classes = fit_class_names(data[schema.target])
    if blocks is None or classes is None:
        return None
    compiled = FeatureTransform.from_blocks(blocks)

    def x_and_y(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        x = compiled.transform(feature_arrays(rows, schema))
        return x, class_indices(rows[schema.target], classes)

    return TransformedFold(classes, block_columns(blocks), *x_and_y(train), *x_and_y(test))


def _with_scikit_learn(
    data: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, schema: DatasetSchema
) -> TransformedFold:
    """With scikit-learn's transformers, the ones the final model ships."""
    from model_training.model_card import feature_columns
    from model_training.preprocessing import (
        fit_features_transformer,
        fit_target_transformer,
        transform,
    )

    features_transformer = fit_features_transformer(train, schema)
    target_transformer = fit_target_transformer(data, schema)
    return TransformedFold(
        [str(name) for name in target_transformer.categories_[0]],
        feature_columns(features_transformer, schema),
        *transform(train, schema, features_transformer, target_transformer),
        *transform(test, schema, features_transformer, target_transformer),
    )
