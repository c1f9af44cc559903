"""The scoring request's own refusals: parameters and locations that cannot work are
refused before any row is read, with a message that says how to fix them."""

from __future__ import annotations

from batch_scoring.errors import ScoringError
from batch_scoring.locations import is_s3, normalized
from batch_scoring.reading import input_format
from common.data import S3_SCHEME


def check_parameters(chunk_rows: int, max_invalid_fraction: float) -> None:
    """Refuse a chunk size below one row, or a fraction outside [0, 1]."""
    if chunk_rows < 1:
        raise ScoringError(f"--chunk-rows must be a positive integer, got {chunk_rows}.")
    if not 0.0 <= max_invalid_fraction <= 1.0:
        raise ScoringError(
            f"--max-invalid-fraction must be a fraction in [0, 1], got {max_invalid_fraction}."
        )


def check_locations(input_location: str, output_location: str) -> None:
    """Refuse an input of unknown format, or an output that cannot be written as asked."""
    input_format(input_location)
    if not output_location:
        raise ScoringError("--output is required: a Parquet file path or s3:// URL to write.")
    if is_s3(output_location) and not output_location.removeprefix(S3_SCHEME).partition("/")[2]:
        raise ScoringError(f"--output {output_location!r} names a bucket, not an object.")
    if normalized(input_location) == normalized(output_location):
        raise ScoringError(
            f"--output is the --input ({input_location!r}): write the predictions elsewhere, "
            "the input must stay as it is."
        )
