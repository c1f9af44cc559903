"""Tests for inference.request_formats: which content types the server takes, and how
many rows a CSV or Parquet body holds before it is decoded."""

from __future__ import annotations

import time

import pytest
from support.request_bodies import parquet_body

from inference.features import InvalidInput
from inference.request_formats import (
    ACCEPTED_TYPES,
    CSV_TYPE,
    JSON_TYPE,
    PARQUET_TYPE,
    UnsupportedMediaType,
    check_csv,
    declared_rows,
    media_type,
    parquet_rows,
)


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("application/json", JSON_TYPE),
        ("Application/JSON", JSON_TYPE),
        ("application/json; charset=utf-8", JSON_TYPE),
        ("APPLICATION/JSON;CHARSET=UTF-8", JSON_TYPE),
        ('application/json; charset="utf-8"', JSON_TYPE),
        (b"text/csv", CSV_TYPE),
        ("Text/CSV", CSV_TYPE),
        ("application/vnd.apache.parquet", PARQUET_TYPE),
    ],
)
def test_accepted_types_are_matched_whatever_their_capitals(header, kind) -> None:
    assert media_type(header) == kind


@pytest.mark.parametrize("header", [None, "", "  ", b""])
def test_a_missing_content_type_names_the_accepted_ones(header) -> None:
    with pytest.raises(UnsupportedMediaType, match="Missing Content-Type") as raised:
        media_type(header)
    assert all(kind in str(raised.value) for kind in ACCEPTED_TYPES)


@pytest.mark.parametrize(
    "header",
    ["text/plain", "application/xml", "application/json; charset=latin-1",
     "application/json; boundary=x", "json", ";", "application/json/extra"],
)  # fmt: skip
def test_other_types_and_parameters_are_refused_naming_the_accepted_ones(header) -> None:
    with pytest.raises(UnsupportedMediaType) as raised:
        media_type(header)
    assert all(kind in str(raised.value) for kind in ACCEPTED_TYPES)


def test_a_parquet_bomb_is_counted_from_its_footer_quickly() -> None:
    body = parquet_body(3_000_000)
    assert len(body) < 100_000
    started = time.perf_counter()
    assert declared_rows(body, PARQUET_TYPE, 1000) == 3_000_000
    assert time.perf_counter() - started < 1.0  # decoding it took 25 s before


def test_a_body_that_is_not_parquet_is_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match="not a readable Parquet file"):
        parquet_rows(b"island,sex\nBiscoe,MALE\n")


def test_json_rows_are_left_to_validation() -> None:
    assert declared_rows(b'{"inputs": []}', JSON_TYPE, 10) is None


@pytest.mark.parametrize(
    ("body", "rows"),
    [
        (b"", 0),
        (b"a,b\n", 0),
        (b"a,b\n1,2\n", 1),
        (b"a,b\n1,2", 1),
        (b"a,b\r\n1,2\r\n3,4\r\n", 2),
        (b"a,b\r1,2\r3,4", 2),  # csv ends a line at a lone CR too
    ],
)
def test_csv_lines_count_the_rows_without_decoding(body: bytes, rows: int) -> None:
    assert declared_rows(body, CSV_TYPE, 1000) == rows


def test_csv_lines_over_the_limit_are_counted_exactly() -> None:
    # Blank lines and a line break inside quotes are not rows: three rows, eight lines.
    body = b'a,b\n\n1,2\n\n3,"x\ny"\n\n4,5\n'
    assert declared_rows(body, CSV_TYPE, 1000) == 7
    assert declared_rows(body, CSV_TYPE, 3) == 3


def test_check_csv_counts_rows_and_skips_blank_lines() -> None:
    assert check_csv(b"\xef\xbb\xbfisland,sex\nBiscoe,MALE\n\nDream,\n") == 2


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"island,sex\nBiscoe,MALE,extra\n", "Row 0: 3 fields, but the header names 2"),
        (b"island,sex\nBiscoe,MALE\nDream\n", "Row 1: 1 fields, but the header names 2"),
        (b"island,island\nBiscoe,Dream\n", "names a field twice"),
        (b"", "Empty CSV"),
        (b"\n\n", "Empty CSV"),
        (b"island\n\xff\xfe\n", "not UTF-8"),
        (b'island,sex\n"Biscoe"x,MALE\n', "Malformed CSV"),
    ],
)
def test_a_csv_whose_fields_would_shift_is_refused_naming_the_row(body, fragment) -> None:
    """pandas takes a first field too many for an index and shifts the row (issue 21)."""
    with pytest.raises(InvalidInput, match=fragment):
        check_csv(body)
