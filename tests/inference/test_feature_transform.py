"""The numpy transform and its JSON description against scikit-learn, beyond penguins:
numeric category codes (checked value by value) beside string ones (looked up by
column), missing values, unknown values, and a description that no longer matches."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from inference.features import COLUMN_LOOKUP_ROWS, FeatureTransform, InvalidInput


@pytest.fixture(scope="module")
def fitted() -> tuple[object, pd.DataFrame]:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "size": rng.normal(10, 3, 60),
        "grade": rng.choice([1, 2, 3], 60).astype(object),
        "tier": rng.choice(["gold", "silver", "bronze"], 60).astype(object),
    })  # fmt: skip
    frame.loc[[0, 5], "size"] = np.nan
    frame.loc[[1, 5], "tier"] = np.nan

    def one_hot():
        return make_pipeline(
            SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
        )

    transformer = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), ["size"]),
        ("grade", one_hot(), ["grade"]),
        ("tier", one_hot(), ["tier"]),
    ]).fit(frame)  # fmt: skip
    return transformer, frame


def longer(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """`frame` repeated to `rows` rows: long columns take the one-lookup path."""
    return pd.concat([frame] * -(-rows // len(frame)), ignore_index=True).head(rows)


# Short columns are looked up value by value, long ones in one pandas call.
LENGTHS = [60, COLUMN_LOOKUP_ROWS + 40]


@pytest.mark.parametrize("rows", LENGTHS)
def test_numeric_and_string_categories_transform_as_scikit_learn_does(fitted, rows) -> None:
    transformer, frame = fitted
    frame = longer(frame, rows)
    fast = FeatureTransform.from_transformer(transformer)
    assert fast.categorical == {"grade": [1, 2, 3], "tier": ["bronze", "gold", "silver"]}
    columns = fast.validate(frame)
    assert fast.verify(columns)  # still compiled: it matched scikit-learn
    expected = transformer.transform(frame)
    np.testing.assert_allclose(fast.transform(columns), expected, atol=1e-6)


@pytest.mark.parametrize("length", LENGTHS)
def test_unknown_values_are_refused_by_column_whatever_the_category_type(fitted, length) -> None:
    transformer, frame = fitted
    fast = FeatureTransform.from_transformer(transformer)
    rows = pd.concat([frame.head(6), longer(frame, length).iloc[6:]], ignore_index=True)
    rows.loc[1, "grade"] = 7
    rows.loc[2, "grade"] = "1"  # the text "1" is not the category 1
    rows.loc[3, "tier"] = "platinum"
    rows.loc[4, "tier"] = 3
    _, kept, problems = fast.validate_rows(rows)
    assert kept.tolist() == [0, 5, *range(6, length)]
    assert [(p.row, p.field) for p in problems] == [
        (1, "grade"), (2, "grade"), (3, "tier"), (4, "tier")
    ]  # fmt: skip
    assert "unknown value 'platinum'" in problems[2].reason
    with pytest.raises(InvalidInput, match=r"Row 1, field 'tier': unknown value 'platinum'"):
        fast.validate(rows.drop(index=[1, 2]))  # row 3 is the second left


def test_the_description_loads_without_scikit_learn_and_refuses_a_mismatch(fitted) -> None:
    transformer, frame = fitted
    fast = FeatureTransform.from_transformer(transformer)
    fast.verify(fast.validate(frame))
    description = json.loads(json.dumps(fast.describe()))  # as stored: plain JSON
    loaded = FeatureTransform.from_description(description)
    assert loaded is not None and loaded.transformer is None
    assert loaded.columns == fast.columns
    np.testing.assert_allclose(
        loaded.transform(loaded.validate(frame)), transformer.transform(frame), atol=1e-6
    )
    description["blocks"][1]["categories"][0] = [3, 2, 1]  # reordered: other columns
    assert FeatureTransform.from_description(description) is None
    assert FeatureTransform.from_description({"format": 99}) is None
