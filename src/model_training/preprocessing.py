"""Fitting the feature and target transformers on training data (the training side).

`fit_transform` fits the scikit-learn transformers the final model ships with; only
scikit-learn classes go into them, so the serving process can unpickle them without
this project's code. `fit_feature_blocks` fits the same features transformer with numpy
alone, for the cross-validation folds. Applying a fitted transformer to requests, and
validating them, is the serving side's job: `inference.features`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


# --- The same fit in numpy, for cross-validation folds --------------------------------------
#
# A fold's transformers only serve to score that fold, never to be shipped, and fitting
# them is a mean, a variance and a count per column. Fitting them with numpy spares each
# fold task importing scikit-learn (~1.5-2 s a process). The result is the fitted
# transformer in the JSON-ready form `inference.features` compiles ("blocks", see there),
# equal to what scikit-learn fits on the same rows (tests/model_training/test_preprocessing.py
# checks it); data the numpy fit cannot promise that for gets None, and scikit-learn.


def fit_feature_blocks(data: pd.DataFrame, schema: DatasetSchema) -> list[dict[str, Any]] | None:
    """What `build_features_transformer(schema).fit(data)` learns, as transform blocks.

    None when scikit-learn could decide otherwise or refuse: a numeric column not of a
    number type (`common.data.clean_dataset` types them), an infinite value, a column
    with no value at all (scikit-learn drops it), a categorical value that is neither a
    string nor missing (NaN).
    """
    blocks = []
    if schema.numeric_features:
        blocks.append(_fit_scaled_block(data, list(schema.numeric_features)))
    if schema.categorical_features:
        blocks.append(_fit_one_hot_block(data, list(schema.categorical_features)))
    return None if None in blocks else blocks


def _fit_scaled_block(data: pd.DataFrame, columns: list[str]) -> dict[str, Any] | None:
    """The numeric columns' mean imputation and standard scaling; None as above."""
    import numpy as np

    if any(data[name].dtype.kind not in "iuf" for name in columns):
        return None
    values = data[columns].to_numpy(dtype="float64")
    present = ~np.isnan(values)
    if np.isinf(values).any() or not present.any(axis=0).all():
        return None
    fill = np.nanmean(values, axis=0)
    imputed = np.where(present, values, fill)
    mean, variance = imputed.mean(axis=0), imputed.var(axis=0)
    # scikit-learn's StandardScaler: a column indistinguishable from a constant keeps
    # scale 1 (the bound of its variance computation's error).
    rows, eps = len(imputed), np.finfo("float64").eps
    constant = variance <= rows * eps * variance + (rows * mean * eps) ** 2
    scale = np.where(constant, 1.0, np.sqrt(variance))
    return {
        "kind": "scaled",
        "columns": columns,
        "fill": fill.tolist(),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
    }


def _fit_one_hot_block(data: pd.DataFrame, columns: list[str]) -> dict[str, Any] | None:
    """The categorical columns' most-frequent imputation and categories; None as above."""
    fills, categories = [], []
    for name in columns:
        fitted = _fit_category_column(data[name].to_numpy(dtype=object))
        if fitted is None:
            return None
        fills.append(fitted[0])
        categories.append(fitted[1])
    return {"kind": "one_hot", "columns": columns, "fill": fills, "categories": categories}


def _fit_category_column(values: np.ndarray) -> tuple[str, list[str]] | None:
    """The most frequent value (the smallest among ties, as scikit-learn's imputer picks)
    and the sorted categories once missing values are imputed with it; None as above."""
    from collections import Counter

    present = [value for value in values if not (isinstance(value, float) and value != value)]
    if not present or not all(isinstance(value, str) for value in present):
        return None
    counts = Counter(present)
    most = max(counts.values())
    fill = min(value for value, count in counts.items() if count == most)
    return fill, sorted(counts)


def feature_arrays(data: pd.DataFrame, schema: DatasetSchema) -> dict[str, np.ndarray]:
    """`data`'s features as one array per column, as compiled transform blocks take them:
    numbers as float64 (missing as NaN), categories as objects."""
    arrays = {name: data[name].to_numpy(dtype="float64") for name in schema.numeric_features}
    arrays |= {name: data[name].to_numpy(dtype=object) for name in schema.categorical_features}
    return arrays


def block_columns(blocks: list[dict[str, Any]]) -> dict[str, list[int]]:
    """The transformed columns each raw feature becomes, from transform blocks: one per
    numeric feature, one per category of a categorical one (as `model_card.feature_columns`
    says of a fitted scikit-learn transformer)."""
    columns: dict[str, list[int]] = {}
    start = 0
    for block in blocks:
        if block["kind"] == "one_hot":
            widths = [len(categories) for categories in block["categories"]]
        else:
            widths = [1] * len(block["columns"])
        for name, width in zip(block["columns"], widths, strict=True):
            columns[name] = list(range(start, start + width))
            start += width
    return columns


def fit_class_names(labels: pd.Series) -> list[str] | None:
    """The target transformer's classes (sorted), without scikit-learn; None unless
    every label is a string (scikit-learn then decides)."""
    values = labels.to_numpy(dtype=object)
    if not all(isinstance(value, str) for value in values):
        return None
    return sorted(set(values))


def class_indices(labels: pd.Series, classes: list[str]) -> np.ndarray:
    """Each label's position in `classes`, shaped (n, 1) as the target transformer
    returns it; a label not among them is an error, as for that transformer."""
    import numpy as np

    lookup = {name: position for position, name in enumerate(classes)}
    try:
        return np.asarray([lookup[value] for value in labels], dtype="int64").reshape(-1, 1)
    except KeyError as error:
        raise ValueError(f"Found unknown class {error.args[0]!r}; known: {classes}.") from None
