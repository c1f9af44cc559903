"""Simulated production traffic (src/common/traffic.py): rows, batches, drift."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset
from common.traffic import (
    DRIFT_STANDARD_DEVIATIONS,
    batches,
    drift_column,
    sample_requests,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = DatasetSchema(
    target="kind",
    numeric_features=("length", "mass"),
    categorical_features=("habitat",),
    extraneous_values={},
)


@pytest.fixture
def data() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "kind": ["a", "b", "a", "b", "a", "b"],
            "length": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
            "mass": [10.0, 20.0, 30.0, 40.0, 50.0, np.nan],
            "habitat": ["town", None, "forest", "town", np.nan, "forest"],
        }
    )


@pytest.fixture(scope="module")
def penguins() -> tuple[pd.DataFrame, DatasetSchema]:
    config = load_project_configuration(REPO_ROOT / "config" / "local.yml")
    schema = DatasetSchema.from_config(config["dataset"])
    return load_dataset(REPO_ROOT / "data" / "penguins.csv", schema, 42), schema


def as_request(row: pd.Series) -> tuple:
    return tuple(None if pd.isna(value) else value for value in row)


def test_samples_are_feature_rows_without_the_target(data: pd.DataFrame) -> None:
    rows = sample_requests(data, SCHEMA, 4, drift=False, seed=0)
    assert len(rows) == 4
    dataset_rows = {as_request(row) for _, row in data[SCHEMA.features].iterrows()}
    for row in rows:
        assert list(row) == ["length", "mass", "habitat"]
        assert tuple(row.values()) in dataset_rows
    assert len({tuple(row.values()) for row in rows}) == 4  # Without replacement.


def test_missing_values_become_null_and_rows_are_json(data: pd.DataFrame) -> None:
    rows = sample_requests(data, SCHEMA, len(data), drift=False, seed=1)
    # Every row once (no replacement when there are enough rows).
    assert sorted(str(row["mass"]) for row in rows) == sorted(str(v) for v in [
        10.0, 20.0, 30.0, 40.0, 50.0, None
    ])  # fmt: skip
    text = json.dumps({"inputs": rows}, allow_nan=False)  # No NaN may reach the server.
    assert json.loads(text)["inputs"] == rows
    assert all(
        not (isinstance(value, float) and math.isnan(value))
        for row in rows
        for value in row.values()
    )
    assert sum(row["habitat"] is None for row in rows) == 2


def test_a_seed_repeats_the_sample_and_no_seed_varies_it(
    penguins: tuple[pd.DataFrame, DatasetSchema],
) -> None:
    data, schema = penguins
    assert sample_requests(data, schema, 20, False, seed=3) == sample_requests(
        data, schema, 20, False, seed=3
    )
    unseeded = [json.dumps(sample_requests(data, schema, 20, False, seed=None)) for _ in range(3)]
    assert len(set(unseeded)) > 1


def test_more_samples_than_rows_draws_with_replacement(data: pd.DataFrame) -> None:
    rows = sample_requests(data, SCHEMA, 25, drift=False, seed=2)
    assert len(rows) == 25
    assert {row["mass"] for row in rows} <= {10.0, 20.0, 30.0, 40.0, 50.0, None}


def test_drift_shifts_only_the_first_numeric_feature(
    penguins: tuple[pd.DataFrame, DatasetSchema],
) -> None:
    data, schema = penguins
    column = drift_column(schema)
    assert column == "culmen_length_mm"
    plain = sample_requests(data, schema, 50, drift=False, seed=5)
    drifted = sample_requests(data, schema, 50, drift=True, seed=5)
    shift = DRIFT_STANDARD_DEVIATIONS * data[column].std()
    assert shift > 0
    for before, after in zip(plain, drifted, strict=True):
        if before[column] is None:
            assert after[column] is None
        else:
            assert after[column] == pytest.approx(before[column] + shift)
        assert {k: v for k, v in before.items() if k != column} == {
            k: v for k, v in after.items() if k != column
        }
    values = [row[column] for row in drifted if row[column] is not None]
    assert np.mean(values) > data[column].mean() + data[column].std()


def test_drift_does_not_change_the_data(penguins: tuple[pd.DataFrame, DatasetSchema]) -> None:
    data, schema = penguins
    before = data.copy()
    sample_requests(data, schema, 30, drift=True, seed=0)
    pd.testing.assert_frame_equal(data, before)


def test_drift_column_needs_a_numeric_feature() -> None:
    assert drift_column(SCHEMA) == "length"
    categorical_only = DatasetSchema("kind", (), ("habitat",), {})
    with pytest.raises(ValueError, match="numeric"):
        drift_column(categorical_only)


@pytest.mark.parametrize(
    ("count", "size", "sizes"),
    [(30, 7, [7, 7, 7, 7, 2]), (10, 10, [10]), (3, 10, [3]), (0, 5, []), (6, 1, [1] * 6)],
)
def test_batches(count: int, size: int, sizes: list[int]) -> None:
    rows = list(range(count))
    groups = batches(rows, size)
    assert [len(group) for group in groups] == sizes
    assert [item for group in groups for item in group] == rows
