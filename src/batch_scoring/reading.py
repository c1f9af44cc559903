"""Reading the input to score: its format, its columns, its rows chunk by chunk.

The input is a CSV or a Parquet file, local or fetched from S3 into a task's temporary
directory; it is never read whole into memory. pandas and pyarrow are imported inside
the functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batch_scoring.errors import ScoringError
from batch_scoring.locations import fetch
from common.data import DatasetSchema

if TYPE_CHECKING:
    import pandas as pd

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class InputFile:
    """The input, as a local file, its format and its column names."""

    path: str
    file_format: str
    columns: list[str]


def open_input(location: str, schema: DatasetSchema, directory: str) -> InputFile:
    """The input at `location` as a local file (fetched into `directory` if s3://),
    refused if absent or without every feature column."""
    file_format = input_format(location)
    local = fetch(location, directory)
    if local is None:
        raise ScoringError(f"--input {location!r}: no such file or object.")
    # A CSV of zero bytes has no header either: an empty input all the same.
    columns = read_columns(local, file_format) or list(schema.features)
    check_columns(columns, schema, location)
    return InputFile(local, file_format, columns)


def input_format(location: str) -> str:
    """`csv` or `parquet`, from the name's suffix."""
    suffix = Path(location.split("?", 1)[0]).suffix.lower()
    if suffix not in FORMATS:
        raise ScoringError(
            f"--input {location!r}: unknown format {suffix or '(no suffix)'!r}. Pass a CSV "
            "(.csv) or a Parquet file (.parquet, .pq), local or s3://."
        )
    return FORMATS[suffix]


def read_columns(path: str, file_format: str) -> list[str]:
    """The column names of a local input file, without reading its rows."""
    if file_format == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    import pandas as pd

    if os.path.getsize(path) == 0:
        return []
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ScoringError(f"Cannot read {path!r} as CSV: {error}") from None


def check_columns(found: Sequence[str], schema: DatasetSchema, location: str) -> None:
    """Refuse an input without every feature column, saying which were expected and found."""
    missing = [column for column in schema.features if column not in found]
    if missing:
        raise ScoringError(
            f"--input {location!r} lacks the feature column(s) {missing}. Expected columns: "
            f"{schema.features}; found: {list(found)}."
        )


def read_chunks(path: str, file_format: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The rows of a local input file, `chunk_rows` at a time, never all in memory.

    An empty file (no rows, or a CSV without even a header) gives no chunk.
    """
    if file_format == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            if batch.num_rows:
                yield batch.to_pandas()
        return
    import pandas as pd

    if os.path.getsize(path) == 0:
        return
    try:
        with pd.read_csv(path, chunksize=chunk_rows) as reader:
            for chunk in reader:
                if len(chunk):
                    yield chunk
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ScoringError(f"Cannot read {path!r} as CSV: {error}") from None


def numbers_from_text(frame: pd.DataFrame, numeric: Sequence[str]) -> pd.DataFrame:
    """Numeric columns of a CSV as numbers where their text is one, the text elsewhere.

    A CSV has no types: `48.6` beside `forty` reads as two strings. The number is what
    the file means; `forty` stays text, for the server's check to refuse it.
    """
    import pandas as pd

    frame = frame.copy()
    for column in numeric:
        if column not in frame or frame[column].dtype.kind != "O":
            continue
        converted = pd.to_numeric(frame[column], errors="coerce")
        unreadable = converted.isna() & frame[column].notna()
        frame[column] = (
            converted
            if not unreadable.any()
            else converted.astype(object).where(~unreadable, frame[column])
        )
    return frame
