"""`FeatureTransform.validate_rows` (batch scoring) agrees with `validate` (the server).

A transformer is fitted on the penguins in process (no model, no server): the checks
are plain functions of the rows. Every row `validate_rows` refuses is one `validate`
refuses alone, with the same message after "Row N, "; every row it keeps, `validate`
accepts, as the same values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from support.paths import LOCAL_CONFIG, PENGUINS_CSV

from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset
from inference.features import (
    NOT_A_NUMBER,
    NOT_FINITE,
    UNKNOWN_CATEGORY,
    FeatureTransform,
    InvalidInput,
)
from model_training.preprocessing import fit_features_transformer

GOOD = {
    "island": "Biscoe",
    "culmen_length_mm": 48.6,
    "culmen_depth_mm": 16.0,
    "flipper_length_mm": 230.0,
    "body_mass_g": 5800.0,
    "sex": "MALE",
}


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
