"""Tests for inference.features: the serving side of the features transformer.

The numpy transform and its JSON description against scikit-learn, beyond penguins:
numeric category codes (checked value by value) beside string ones (looked up by
column), missing values, unknown values, and a description that no longer matches.

Row validation: `FeatureTransform.validate_rows` (batch scoring) agrees with `validate`
(the server). A transformer is fitted on the penguins in process (no model, no server):
the checks are plain functions of the rows. Every row `validate_rows` refuses is one
`validate` refuses alone, with the same message after "Row N, "; every row it keeps,
`validate` accepts, as the same values.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from support.paths import LOCAL_CONFIG, PENGUINS_CSV
from support.rows import SPEC_ROW

from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset
from inference.features import (
    COLUMN_LOOKUP_ROWS,
    NOT_A_NUMBER,
    NOT_FINITE,
    UNKNOWN_CATEGORY,
    FeatureTransform,
    InvalidInput,
)
from model_training.preprocessing import fit_features_transformer


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


# --- Row validation: batch scoring and the server agree ------------------------------------


GOOD = SPEC_ROW


@pytest.fixture(scope="module")
def features() -> FeatureTransform:
    schema = DatasetSchema.from_config(load_project_configuration(LOCAL_CONFIG)["dataset"])
    data = load_dataset(PENGUINS_CSV, schema, 42)
    return FeatureTransform.from_transformer(fit_features_transformer(data, schema))


def server_message(features: FeatureTransform, row: pd.DataFrame) -> str | None:
    """What the server's validation says about a one-row table, None if it accepts it."""
    try:
        features.validate(row.reset_index(drop=True))
    except InvalidInput as error:
        return str(error)
    return None


# Rows of a table as a file gives them: object columns where a value is not a number.
MIXED = [
    GOOD,
    {**GOOD, "culmen_length_mm": "forty"},
    {**GOOD, "island": "Atlantis"},
    {**GOOD, "body_mass_g": math.inf},
    {**GOOD, "culmen_depth_mm": None, "sex": None},  # missing: imputed, kept
    {**GOOD, "flipper_length_mm": True},
    {**GOOD, "island": 3},
    {**GOOD, "culmen_length_mm": "x", "island": "Atlantis"},  # two problems, first wins
    {**GOOD, "body_mass_g": -math.inf},
]


def test_refused_rows_are_the_ones_the_server_refuses_with_its_messages(
    features: FeatureTransform,
) -> None:
    frame = pd.DataFrame(MIXED)
    _, kept, problems = features.validate_rows(frame)
    refused = {problem.row: problem for problem in problems}
    assert sorted(refused) == [1, 2, 3, 5, 6, 7, 8]
    assert kept.tolist() == [0, 4]
    for position in range(len(MIXED)):
        # The row alone, its columns typed as in the table.
        message = server_message(features, frame.iloc[[position]])
        if position in refused:
            assert message == f"Row 0, {refused[position].reason}", position
        else:
            assert message is None, position
    assert [refused[row].kind for row in (1, 2, 3, 5, 6, 7, 8)] == [
        NOT_A_NUMBER, UNKNOWN_CATEGORY, NOT_FINITE, NOT_A_NUMBER, UNKNOWN_CATEGORY,
        NOT_A_NUMBER, NOT_FINITE,
    ]  # fmt: skip
    assert refused[7].field == "culmen_length_mm"  # numbers are checked before categories


def test_kept_rows_are_what_validate_returns_for_them(features: FeatureTransform) -> None:
    frame = pd.DataFrame(MIXED)
    columns, kept, _ = features.validate_rows(frame)
    expected = features.validate(frame.iloc[kept].reset_index(drop=True))
    assert set(columns) == set(expected)
    pd.testing.assert_frame_equal(features.frame(columns), features.frame(expected))


def test_a_typed_numeric_column_refuses_only_its_infinite_rows(features: FeatureTransform) -> None:
    frame = pd.DataFrame([GOOD] * 4)
    frame["body_mass_g"] = [1.0, np.inf, np.nan, -np.inf]
    _, kept, problems = features.validate_rows(frame)
    assert kept.tolist() == [0, 2]
    assert [(p.row, p.kind) for p in problems] == [(1, NOT_FINITE), (3, NOT_FINITE)]
    assert server_message(features, frame.iloc[[1]]) == f"Row 0, {problems[0].reason}"


def test_other_columns_are_ignored_and_a_missing_feature_is_imputed(
    features: FeatureTransform,
) -> None:
    frame = pd.DataFrame([{**GOOD, "customer": "c-1"}]).drop(columns="sex")
    columns, kept, problems = features.validate_rows(frame)
    assert kept.tolist() == [0] and problems == []
    assert set(columns) == set(features.columns)
    assert pd.isna(columns["sex"][0])


def test_the_server_still_refuses_the_first_problem_with_its_message(
    features: FeatureTransform,
) -> None:
    rows = [GOOD, {**GOOD, "island": "Atlantis"}, {**GOOD, "culmen_length_mm": "48.6"}]
    with pytest.raises(InvalidInput) as refused:
        features.validate(rows)
    # Numbers are checked first: row 2's string, though row 1 comes earlier.
    assert str(refused.value) == "Row 2, field 'culmen_length_mm': expected a number, got '48.6'."
    with pytest.raises(InvalidInput, match=r"Row 0, field 'body_mass_g': NaN is not a finite"):
        features.validate([{**GOOD, "body_mass_g": math.nan}])  # JSON's NaN is an error


def test_an_empty_table_has_no_rows_and_no_problems(features: FeatureTransform) -> None:
    columns, kept, problems = features.validate_rows(pd.DataFrame(columns=list(GOOD)))
    assert len(kept) == 0 and problems == []
    assert all(len(values) == 0 for values in columns.values())
