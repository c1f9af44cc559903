"""Reading the input to score (src/batch_scoring/reading.py): columns, chunks, numbers
in CSV text. Files are real files in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_scoring.errors import ScoringError
from batch_scoring.reading import (
    check_columns,
    numbers_from_text,
    open_input,
    read_chunks,
    read_columns,
)
from common.data import DatasetSchema

SCHEMA = DatasetSchema(
    target="label", numeric_features=("x",), categorical_features=("c",), extraneous_values={}
)


def test_a_missing_column_names_what_was_expected_and_found() -> None:
    with pytest.raises(ScoringError) as refused:
        check_columns(["x", "other"], SCHEMA, "in.csv")
    assert "['c']" in str(refused.value)
    assert "Expected columns: ['x', 'c']; found: ['x', 'other']" in str(refused.value)


def test_an_input_is_opened_with_its_format_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    pd.DataFrame({"label": ["a"], "x": [1.0], "c": ["b"]}).to_csv(path, index=False)
    source = open_input(str(path), SCHEMA, str(tmp_path))
    assert (source.path, source.file_format, source.columns) == (
        str(path), "csv", ["label", "x", "c"]
    )  # fmt: skip
    (tmp_path / "empty.csv").write_text("")
    assert open_input(str(tmp_path / "empty.csv"), SCHEMA, str(tmp_path)).columns == ["x", "c"]
    with pytest.raises(ScoringError, match="no such file"):
        open_input(str(tmp_path / "absent.csv"), SCHEMA, str(tmp_path))


def test_a_csv_is_read_in_chunks_of_the_asked_size(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    pd.DataFrame({"x": range(25), "c": ["a"] * 25}).to_csv(path, index=False)
    chunks = list(read_chunks(str(path), "csv", 10))
    assert [len(chunk) for chunk in chunks] == [10, 10, 5]
    assert pd.concat(chunks)["x"].tolist() == list(range(25))
    assert read_columns(str(path), "csv") == ["x", "c"]


def test_a_parquet_file_is_read_in_chunks_of_the_asked_size(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": list(range(25)), "c": ["a"] * 25}), path, row_group_size=7)
    chunks = list(read_chunks(str(path), "parquet", 10))
    assert [len(chunk) for chunk in chunks] == [10, 10, 5]
    assert read_columns(str(path), "parquet") == ["x", "c"]


@pytest.mark.parametrize("content", ["", "x,c\n"])
def test_an_empty_csv_has_no_chunks(tmp_path: Path, content: str) -> None:
    path = tmp_path / "in.csv"
    path.write_text(content)
    assert list(read_chunks(str(path), "csv", 10)) == []
    assert read_columns(str(path), "csv") == (["x", "c"] if content else [])


def test_numbers_in_csv_text_become_numbers_and_the_rest_stays_text() -> None:
    frame = pd.DataFrame({"x": ["1.5", "forty", None, "inf"], "c": ["1", "2", "3", "4"]})
    converted = numbers_from_text(frame, ["x"])
    assert converted["x"].tolist()[:2] == [1.5, "forty"]
    assert pd.isna(converted["x"].iloc[2]) and converted["x"].iloc[3] == np.inf
    assert converted["c"].tolist() == ["1", "2", "3", "4"]  # not a numeric feature
    assert numbers_from_text(pd.DataFrame({"x": ["1", "2"]}), ["x"])["x"].dtype.kind == "i"
