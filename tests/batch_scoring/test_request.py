"""The scoring request's refusals before any work (src/batch_scoring/request.py)."""

from __future__ import annotations

import pytest

from batch_scoring.errors import ScoringError
from batch_scoring.request import check_locations, check_parameters


@pytest.mark.parametrize(
    ("input_location", "output_location", "message"),
    [
        ("new.json", "out.parquet", "unknown format '.json'"),
        ("new.csv", "", "--output is required"),
        ("new.csv", "s3://bucket", "names a bucket"),
        ("new.csv", "new.csv", "the input must stay"),
    ],
)
def test_bad_locations_are_refused_saying_why(
    input_location: str, output_location: str, message: str
) -> None:
    with pytest.raises(ScoringError, match=message):
        check_locations(input_location, output_location)


@pytest.mark.parametrize(
    ("chunk_rows", "fraction", "message"),
    [(0, 0.01, "--chunk-rows"), (10, 1.5, "--max-invalid-fraction"), (10, -0.1, "fraction")],
)
def test_bad_parameters_are_refused(chunk_rows: int, fraction: float, message: str) -> None:
    with pytest.raises(ScoringError, match=message):
        check_parameters(chunk_rows, fraction)
