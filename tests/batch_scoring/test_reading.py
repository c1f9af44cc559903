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
    chunks = [chunk.rows for chunk in read_chunks(str(path), "csv", 10)]
    assert [len(chunk) for chunk in chunks] == [10, 10, 5]
    assert pd.concat(chunks)["x"].tolist() == list(range(25))
    assert read_columns(str(path), "csv") == ["x", "c"]


def test_a_parquet_file_is_read_in_chunks_of_the_asked_size(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": list(range(25)), "c": ["a"] * 25}), path, row_group_size=7)
    chunks = [chunk.rows for chunk in read_chunks(str(path), "parquet", 10)]
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


# --- strict column counts, and files that cannot be read --------------------------------


def test_a_ragged_row_is_set_aside_never_shifted(tmp_path: Path) -> None:
    """pandas' default turns a first data row with extra fields into an index and shifts
    every column; a short row would be padded. Here each is refused at its place."""
    path = tmp_path / "in.csv"
    path.write_text("x,c\n2,b,extra,more\n1,a\n3\n4,d\n")
    (chunk,) = read_chunks(str(path), "csv", 10)
    assert chunk.rows["x"].tolist() == [1, 4] and chunk.rows["c"].tolist() == ["a", "d"]
    assert chunk.positions.tolist() == [1, 3]
    assert [(r.position, r.fields, r.text) for r in chunk.ragged] == [
        (0, 4, "2,b,extra,more"), (2, 1, "3"),
    ]  # fmt: skip
    assert chunk.size == 4


def test_on_an_all_numeric_schema_no_value_moves_to_another_column(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("x,y\n1,2,3,4\n5,6\n7,8\n")
    chunks = list(read_chunks(str(path), "csv", 2))
    assert [chunk.rows.to_dict("list") for chunk in chunks] == [
        {"x": [5], "y": [6]}, {"x": [7], "y": [8]},
    ]  # fmt: skip
    assert [chunk.size for chunk in chunks] == [2, 1]
    assert [r.fields for r in chunks[0].ragged] == [4]


def test_a_header_without_the_trailing_comma_of_its_rows_refuses_every_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.csv"
    path.write_text("x,c\n1,a,\n2,b,\n")
    (chunk,) = read_chunks(str(path), "csv", 10)
    assert len(chunk.rows) == 0 and list(chunk.rows.columns) == ["x", "c"]
    assert [(r.position, r.fields) for r in chunk.ragged] == [(0, 3), (1, 3)]


def test_fields_are_counted_as_csv_quotes_them_and_blank_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('x,c\n1,"a, with a comma"\n\n   \n2,"two\nlines"\r\n3,c\n')
    (chunk,) = read_chunks(str(path), "csv", 10)
    assert chunk.rows["c"].tolist() == ["a, with a comma", "two\nlines", "c"]
    assert chunk.ragged == [] and chunk.positions.tolist() == [0, 1, 2]


@pytest.mark.parametrize("content", ["\n\n", "\n  \n\r\n"])
def test_a_csv_of_blank_lines_is_refused_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "blank.csv"
    path.write_text(content)
    for read in (
        lambda: open_input(str(path), SCHEMA, str(tmp_path)),
        lambda: list(read_chunks(str(path), "csv", 10)),
    ):
        with pytest.raises(ScoringError, match="holds only blank lines: no header row") as error:
            read()
        assert str(path) in str(error.value)


def test_a_csv_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("x,c\n1,Bisc\xf6e\n".encode("latin-1"))
    with pytest.raises(ScoringError, match=r"latin\.csv' is not UTF-8 text"):
        list(read_chunks(str(path), "csv", 10))


def write_parquet(path: Path, rows: int = 2000) -> bytes:
    pq.write_table(
        pa.table({"x": [float(i) for i in range(rows)], "c": ["a"] * rows}), path,
        row_group_size=500, compression="NONE",
    )  # fmt: skip
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["not parquet", "cut short", "empty"])
def test_a_corrupt_parquet_file_is_refused_naming_it(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "in.parquet"
    whole = write_parquet(path)
    path.write_bytes(
        {"not parquet": b"x,c\n1,a\n", "cut short": whole[: len(whole) // 2], "empty": b""}[damage]
    )
    with pytest.raises(ScoringError, match=r"in\.parquet' is not a readable Parquet file"):
        open_input(str(path), SCHEMA, str(tmp_path))


def test_a_parquet_file_corrupt_inside_is_refused_when_read(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    whole = bytearray(write_parquet(path))
    footer = int.from_bytes(whole[-8:-4], "little") + 8
    whole[4 : len(whole) - footer] = b"\xff" * (len(whole) - footer - 4)  # pages, not footer
    path.write_bytes(bytes(whole))
    assert read_columns(str(path), "parquet") == ["x", "c"]  # the footer still reads
    with pytest.raises(ScoringError, match=r"'s3://b/in\.parquet' is not a readable Parquet"):
        list(read_chunks(str(path), "parquet", 100, "s3://b/in.parquet"))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_line_ending_reads_as_pandas_reads_it(tmp_path: Path, newline: str) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(newline.join(["x,c", "1,a", "2", "3,c", ""]).encode())
    (chunk,) = read_chunks(str(path), "csv", 10)
    assert chunk.rows.to_dict("list") == {"x": [1, 3], "c": ["a", "c"]}
    assert [(r.position, r.text) for r in chunk.ragged] == [(1, "2")]


def test_a_quote_after_the_first_chunk_switches_to_counting_as_csv(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("x,c\n" + "".join(f"{i},a\n" for i in range(5)) + '5,"b,c"\n6\n7,d\n')
    chunks = list(read_chunks(str(path), "csv", 3))
    assert pd.concat(chunk.rows for chunk in chunks)["c"].tolist() == [
        "a", "a", "a", "a", "a", "b,c", "d",
    ]  # fmt: skip
    assert [[r.position for r in chunk.ragged] for chunk in chunks] == [[], [], [0]]
    assert sum(chunk.size for chunk in chunks) == 8
