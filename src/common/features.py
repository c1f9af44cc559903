"""Feature and target transformers, fitted on training data and shipped with the model.

Only scikit-learn classes go into the fitted objects, so the serving process can
unpickle them without this project's code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.data import DatasetSchema

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder


def build_features_transformer(schema: DatasetSchema) -> ColumnTransformer:
    """Impute and scale numeric columns; impute and one-hot encode categorical ones.

    Unknown categories encode as all zeros here; rejecting them with a clear message
    is the serving layer's job, where the caller can be told.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = make_pipeline(SimpleImputer(strategy="mean"), StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    transformers = []
    if schema.numeric_features:
        transformers.append(("numeric", numeric, list(schema.numeric_features)))
    if schema.categorical_features:
        transformers.append(("categorical", categorical, list(schema.categorical_features)))
    return ColumnTransformer(transformers, sparse_threshold=0.0)


def build_target_transformer() -> OrdinalEncoder:
    """Class names to integer labels (sorted), and back with `inverse_transform`."""
    from sklearn.preprocessing import OrdinalEncoder

    return OrdinalEncoder(dtype="int64")


def fit_features_transformer(data: pd.DataFrame, schema: DatasetSchema) -> ColumnTransformer:
    """The features transformer fitted on `data`'s feature columns."""
    return build_features_transformer(schema).fit(data[schema.features])


def fit_target_transformer(data: pd.DataFrame, schema: DatasetSchema) -> OrdinalEncoder:
    """The target transformer fitted on `data`'s target column."""
    return build_target_transformer().fit(data[[schema.target]])


def fit_transform(
    data: pd.DataFrame, schema: DatasetSchema
) -> tuple[ColumnTransformer, OrdinalEncoder, np.ndarray, np.ndarray]:
    """Fit both transformers on `data`; return them with the transformed x and y.

    y is shaped (n, 1), as the target transformer returns it.
    """
    features_transformer = build_features_transformer(schema)
    target_transformer = build_target_transformer()
    x = features_transformer.fit_transform(data[schema.features]).astype("float32")
    y = target_transformer.fit_transform(data[[schema.target]])
    return features_transformer, target_transformer, x, y


def transform(
    data: pd.DataFrame,
    schema: DatasetSchema,
    features_transformer: ColumnTransformer,
    target_transformer: OrdinalEncoder,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply already fitted transformers to `data`: x, and y shaped (n, 1)."""
    x = features_transformer.transform(data[schema.features]).astype("float32")
    y = target_transformer.transform(data[[schema.target]])
    return x, y
