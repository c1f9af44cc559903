"""Tests for common.features: fitted feature and target transformers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.data import DatasetSchema
from common.features import (
    build_features_transformer,
    build_target_transformer,
    fit_features_transformer,
    fit_target_transformer,
    fit_transform,
    transform,
)

SCHEMA = DatasetSchema(
    target="outcome",
    numeric_features=("speed", "weight"),
    categorical_features=("shape", "size"),
    extraneous_values={},
)
SHAPES = ["circle", "square", "triangle"]
SIZES = ["big", "small"]
CLASSES = ["no", "unsure", "yes"]
WIDTH = 2 + len(SHAPES) + len(SIZES)


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "speed": rng.normal(50, 10, rows),
            "weight": rng.uniform(1, 100, rows),
            "shape": rng.choice(SHAPES, rows).astype(object),
            "size": rng.choice(SIZES, rows).astype(object),
            "outcome": np.resize(CLASSES, rows).astype(object),
            "ignored": "not a feature",
        }
    )


@pytest.fixture
def train() -> pd.DataFrame:
    return make_frame(40, seed=0)


def test_fit_transform_shapes_and_types(train: pd.DataFrame) -> None:
    _, _, x, y = fit_transform(train, SCHEMA)
    assert x.shape == (40, WIDTH)
    assert x.dtype == np.float32
    # As the target transformer returns it, like the reference course's artifacts.
    assert y.shape == (40, 1)
    assert y.dtype == np.int64


def test_fitting_each_transformer_alone_matches_fitting_both(train: pd.DataFrame) -> None:
    _, _, x, y = fit_transform(train, SCHEMA)
    alone_x, alone_y = transform(
        train,
        SCHEMA,
        fit_features_transformer(train, SCHEMA),
        fit_target_transformer(train, SCHEMA),
    )
    np.testing.assert_array_equal(alone_x, x)
    np.testing.assert_array_equal(alone_y, y)


def test_target_transformer_fitted_on_all_rows_encodes_a_class_missing_from_some(
    train: pd.DataFrame,
) -> None:
    without_yes = train[train["outcome"] != "yes"]
    target = fit_target_transformer(train, SCHEMA)
    _, y = transform(train, SCHEMA, fit_features_transformer(without_yes, SCHEMA), target)
    assert list(target.categories_[0]) == CLASSES
    assert y[train["outcome"].to_numpy() == "yes"].ravel().tolist() == [2] * int(
        (train["outcome"] == "yes").sum()
    )


def test_numeric_columns_are_scaled(train: pd.DataFrame) -> None:
    _, _, x, _ = fit_transform(train, SCHEMA)
    numeric = x[:, :2]
    np.testing.assert_allclose(numeric.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(numeric.std(axis=0), 1, atol=1e-4)
    # Scaling preserves order.
    assert np.argsort(numeric[:, 0]).tolist() == np.argsort(train["speed"].to_numpy()).tolist()


def test_categorical_columns_are_one_hot(train: pd.DataFrame) -> None:
    _, _, x, _ = fit_transform(train, SCHEMA)
    shape_block, size_block = x[:, 2:5], x[:, 5:7]
    assert set(np.unique(x[:, 2:])) <= {0.0, 1.0}
    assert (shape_block.sum(axis=1) == 1).all()
    assert (size_block.sum(axis=1) == 1).all()
    # Categories are sorted: circle, square, triangle.
    expected = train["shape"].map({name: i for i, name in enumerate(SHAPES)}).to_numpy()
    assert (shape_block.argmax(axis=1) == expected).all()


def test_transform_new_rows_matches_fitted_layout(train: pd.DataFrame) -> None:
    features, target, x_train, _ = fit_transform(train, SCHEMA)
    test = make_frame(7, seed=1)
    x, y = transform(test, SCHEMA, features, target)
    assert x.shape == (7, WIDTH)
    assert x.dtype == np.float32
    assert y.ravel().tolist() == [CLASSES.index(name) for name in test["outcome"]]
    # Transforming the training rows again gives the fitted output.
    x_again, _ = transform(train, SCHEMA, features, target)
    np.testing.assert_array_equal(x_again, x_train)


def test_missing_values_are_imputed(train: pd.DataFrame) -> None:
    train = train.copy()
    train.loc[[0, 5], "speed"] = np.nan
    train.loc[[1, 6], "shape"] = np.nan
    train.loc[[2], "size"] = np.nan
    features, target, x, _ = fit_transform(train, SCHEMA)
    assert not np.isnan(x).any()

    blank = pd.DataFrame(
        {
            "speed": [np.nan],
            "weight": [np.nan],
            "shape": [np.nan],
            "size": [np.nan],
            "outcome": ["no"],
        }
    )
    x_blank, _ = transform(blank, SCHEMA, features, target)
    assert not np.isnan(x_blank).any()
    # Numeric: the mean, i.e. zero once scaled. Categorical: the most frequent value.
    np.testing.assert_allclose(x_blank[0, :2], 0, atol=1e-5)
    most_frequent_shape = train["shape"].value_counts().idxmax()
    assert x_blank[0, 2 + SHAPES.index(most_frequent_shape)] == 1.0
    assert x_blank[0, 2:5].sum() == 1.0


def test_unknown_category_encodes_as_zeros(train: pd.DataFrame) -> None:
    features, target, _, _ = fit_transform(train, SCHEMA)
    row = pd.DataFrame(
        {
            "speed": [50.0],
            "weight": [10.0],
            "shape": ["hexagon"],
            "size": ["big"],
            "outcome": ["yes"],
        }
    )
    x, _ = transform(row, SCHEMA, features, target)
    assert x[0, 2:5].tolist() == [0.0, 0.0, 0.0]
    assert x[0, 5:7].tolist() == [1.0, 0.0]


def test_target_round_trip_to_class_names(train: pd.DataFrame) -> None:
    _, target, _, y = fit_transform(train, SCHEMA)
    assert list(target.categories_[0]) == CLASSES
    names = target.inverse_transform(y.reshape(-1, 1)).ravel()
    assert names.tolist() == train["outcome"].tolist()


def test_numeric_target_labels() -> None:
    data = make_frame(12, seed=3)
    data["outcome"] = np.resize([3, 10, 7], 12)
    _, target, _, y = fit_transform(data, SCHEMA)
    assert sorted(set(y.ravel().tolist())) == [0, 1, 2]
    assert target.inverse_transform(y.reshape(-1, 1)).ravel().tolist() == data["outcome"].tolist()


def test_only_numeric_or_only_categorical_features(train: pd.DataFrame) -> None:
    numeric_only = DatasetSchema("outcome", ("speed", "weight"), (), {})
    categorical_only = DatasetSchema("outcome", (), ("shape",), {})
    assert fit_transform(train, numeric_only)[2].shape == (40, 2)
    assert fit_transform(train, categorical_only)[2].shape == (40, 3)


def test_fresh_transformers_are_unfitted() -> None:
    features = build_features_transformer(SCHEMA)
    assert not hasattr(features, "transformers_")
    assert [name for name, _, _ in features.transformers] == ["numeric", "categorical"]
    assert not hasattr(build_target_transformer(), "categories_")
