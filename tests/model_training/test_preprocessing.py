"""Tests for model_training.preprocessing: fitted feature and target transformers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.data import DatasetSchema
from model_training.preprocessing import (
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


# --- the numpy fit the cross-validation folds use ------------------------------------------


def scikit_learn_blocks(data: pd.DataFrame, schema: DatasetSchema = SCHEMA) -> list[dict]:
    from inference.features import FeatureTransform

    described = FeatureTransform.from_transformer(fit_features_transformer(data, schema))
    description = described.describe()
    assert description is not None
    return description["blocks"]


def assert_same_blocks(ours: list[dict] | None, theirs: list[dict]) -> None:
    assert ours is not None
    assert [(b["kind"], b["columns"]) for b in ours] == [(b["kind"], b["columns"]) for b in theirs]
    for mine, reference in zip(ours, theirs, strict=True):
        if mine["kind"] == "scaled":
            for key in ("fill", "mean", "scale"):
                np.testing.assert_allclose(mine[key], reference[key], rtol=1e-12)
        else:
            assert mine["fill"] == reference["fill"]
            assert mine["categories"] == reference["categories"]


def with_gaps(data: pd.DataFrame) -> pd.DataFrame:
    data = data.copy()
    data.loc[[0, 5, 9], "speed"] = np.nan
    data.loc[[1, 6], "shape"] = np.nan
    data.loc[[2], "size"] = np.nan
    return data


def test_the_numpy_fit_learns_what_scikit_learn_learns(train: pd.DataFrame) -> None:
    from model_training.preprocessing import fit_feature_blocks

    for data in (train, with_gaps(train), with_gaps(make_frame(333, seed=7))):
        assert_same_blocks(fit_feature_blocks(data, SCHEMA), scikit_learn_blocks(data))


def test_the_numpy_fit_transforms_new_rows_as_scikit_learn_does(train: pd.DataFrame) -> None:
    from inference.features import FeatureTransform
    from model_training.preprocessing import feature_arrays, fit_feature_blocks

    train = with_gaps(train)
    test = with_gaps(make_frame(700, seed=2))  # long enough for the column-at-once path
    test.loc[3, "shape"] = "hexagon"  # unknown: all zeros, as with handle_unknown="ignore"
    features, target, _, _ = fit_transform(train, SCHEMA)
    compiled = FeatureTransform.from_blocks(fit_feature_blocks(train, SCHEMA))
    for rows in (train, test, test.head(5)):
        expected, _ = transform(rows, SCHEMA, features, target)
        np.testing.assert_allclose(
            compiled.transform(feature_arrays(rows, SCHEMA)), expected, atol=1e-6
        )


def test_the_numpy_fit_breaks_category_ties_as_scikit_learn_does() -> None:
    from model_training.preprocessing import fit_feature_blocks

    schema = DatasetSchema("outcome", (), ("shape",), {})
    data = pd.DataFrame(
        {"shape": ["square", "circle", "square", np.nan, "circle"], "outcome": ["a"] * 5},
        dtype=object,
    )
    blocks = fit_feature_blocks(data, schema)
    assert blocks[0]["fill"] == ["circle"]  # the smallest of the most frequent
    assert_same_blocks(blocks, scikit_learn_blocks(data, schema))


def test_a_constant_numeric_column_keeps_scale_one_as_with_scikit_learn() -> None:
    from model_training.preprocessing import fit_feature_blocks

    schema = DatasetSchema("outcome", ("speed", "weight"), (), {})
    data = pd.DataFrame({"speed": [0.1] * 9, "weight": np.arange(9.0), "outcome": ["a"] * 9})
    blocks = fit_feature_blocks(data, schema)
    assert blocks[0]["scale"][0] == 1.0
    assert_same_blocks(blocks, scikit_learn_blocks(data, schema))


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("shape", [1, 2, 1, 2, 1, 2]),  # categories that are not strings
        ("shape", ["circle", None, "square", "circle", "square", "circle"]),  # None, not NaN
        ("shape", [np.nan] * 6),  # no value at all: scikit-learn drops the column
        ("speed", [np.nan] * 6),
        ("speed", [1.0, np.inf, 2.0, 3.0, 4.0, 5.0]),  # scikit-learn refuses it
        ("speed", ["1", "2", "3", "4", "5", "6"]),  # text where numbers should be
    ],
)
def test_data_the_numpy_fit_cannot_vouch_for_is_left_to_scikit_learn(
    train: pd.DataFrame, column: str, values: list
) -> None:
    from model_training.preprocessing import fit_feature_blocks

    data = train.head(6).copy()
    data[column] = pd.Series(values, dtype=object)
    assert fit_feature_blocks(data, SCHEMA) is None


def test_block_columns_match_the_fitted_transformer(train: pd.DataFrame) -> None:
    from model_training.model_card import feature_columns
    from model_training.preprocessing import block_columns, fit_feature_blocks

    features = fit_features_transformer(train, SCHEMA)
    assert block_columns(fit_feature_blocks(train, SCHEMA)) == feature_columns(features, SCHEMA)
    assert block_columns(fit_feature_blocks(train, SCHEMA)) == {
        "speed": [0], "weight": [1], "shape": [2, 3, 4], "size": [5, 6]
    }  # fmt: skip


def test_class_names_and_indices_match_the_target_transformer(train: pd.DataFrame) -> None:
    from model_training.preprocessing import class_indices, fit_class_names

    target = fit_target_transformer(train, SCHEMA)
    classes = fit_class_names(train["outcome"])
    assert classes == [str(name) for name in target.categories_[0]]
    indices = class_indices(train["outcome"], classes)
    np.testing.assert_array_equal(indices, target.transform(train[["outcome"]]))
    assert indices.dtype == np.int64 and indices.shape == (40, 1)
    assert fit_class_names(pd.Series([3, 10, 7])) is None  # numbers: scikit-learn decides
    with pytest.raises(ValueError, match="unknown class 'maybe'"):
        class_indices(pd.Series(["yes", "maybe"]), classes)
