"""Reading the input to score: its format, its columns, its rows chunk by chunk.

The input is a CSV or a Parquet file, local or fetched from S3 into a task's temporary
directory; it is never read whole into memory. pandas and pyarrow are imported inside
the functions.

A CSV's column count is strict: a row with more or fewer fields than the header is
set aside as ragged (refused with its reason, see `splitting`), never shifted into
other columns or into an index. Each record's fields are counted first (its commas,
or the csv module's split where fields are quoted); the well-formed records are then
parsed by pandas as a CSV of their own, so their values and types are what pandas
makes of them (~1 s more per million rows than pandas alone). A file that cannot be read (no
header, not UTF-8, corrupt Parquet) is a `ScoringError` naming it and what is wrong.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from batch_scoring.errors import ScoringError
from batch_scoring.locations import fetch
from common.data import DatasetSchema

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# How much of a ragged row its reason quotes.
RAGGED_TEXT_CHARS = 200


@dataclass(frozen=True)
class InputFile:
    """The input, as a local file, its format and its column names."""

    path: str
    file_format: str
    columns: list[str]
    location: str = ""  # where it was read from, for messages (the path when empty)

    @property
    def name(self) -> str:
        return self.location or self.path


@dataclass(frozen=True)
class RaggedRow:
    """A CSV row whose number of fields is not the header's: refused, never shifted."""

    position: int  # among the chunk's rows
    fields: int
    text: str  # the row as written, cut to RAGGED_TEXT_CHARS


@dataclass
class InputChunk:
    """Up to `chunk_rows` rows of the input: the well-formed ones, and the ragged ones."""

    rows: pd.DataFrame  # the well-formed rows
    positions: np.ndarray  # each well-formed row's place among the chunk's rows
    ragged: list[RaggedRow] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Rows of the input in this chunk, well-formed or not."""
        return len(self.rows) + len(self.ragged)


def open_input(location: str, schema: DatasetSchema, directory: str) -> InputFile:
    """The input at `location` as a local file (fetched into `directory` if s3://),
    refused if absent or without every feature column."""
    file_format = input_format(location)
    local = fetch(location, directory)
    if local is None:
        raise ScoringError(f"--input {location!r}: no such file or object.")
    # A CSV of zero bytes has no header either: an empty input all the same.
    columns = read_columns(local, file_format, location) or list(schema.features)
    check_columns(columns, schema, location)
    return InputFile(local, file_format, columns, location)


def input_format(location: str) -> str:
    """`csv` or `parquet`, from the name's suffix."""
    suffix = Path(location.split("?", 1)[0]).suffix.lower()
    if suffix not in FORMATS:
        raise ScoringError(
            f"--input {location!r}: unknown format {suffix or '(no suffix)'!r}. Pass a CSV "
            "(.csv) or a Parquet file (.parquet, .pq), local or s3://."
        )
    return FORMATS[suffix]


def read_columns(path: str, file_format: str, name: str | None = None) -> list[str]:
    """The column names of a local input file, without reading its rows.

    `name` is the input as its messages call it (`path` by default).
    """
    name = name or path
    if file_format == "parquet":
        import pyarrow.parquet as pq

        with _parquet_errors(name):
            return list(pq.read_schema(path).names)
    import pandas as pd

    if os.path.getsize(path) == 0:
        return []
    with _csv_errors(name):
        return list(pd.read_csv(path, nrows=0, index_col=False).columns)


def check_columns(found: Sequence[str], schema: DatasetSchema, location: str) -> None:
    """Refuse an input without every feature column, saying which were expected and found."""
    missing = [column for column in schema.features if column not in found]
    if missing:
        raise ScoringError(
            f"--input {location!r} lacks the feature column(s) {missing}. Expected columns: "
            f"{schema.features}; found: {list(found)}."
        )


def read_chunks(
    path: str, file_format: str, chunk_rows: int, name: str | None = None
) -> Iterator[InputChunk]:
    """The rows of a local input file, `chunk_rows` at a time, never all in memory.

    An empty file (no rows, or a CSV without even a header) gives no chunk. `name` is
    the input as messages call it (`path` by default).
    """
    name = name or path
    if file_format == "parquet":
        yield from _parquet_chunks(path, chunk_rows, name)
    elif os.path.getsize(path) > 0:
        yield from _csv_chunks(path, chunk_rows, name)


def _parquet_chunks(path: str, chunk_rows: int, name: str) -> Iterator[InputChunk]:
    import numpy as np
    import pyarrow.parquet as pq

    with _parquet_errors(name):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            if batch.num_rows:
                yield InputChunk(batch.to_pandas(), np.arange(batch.num_rows))


def _csv_chunks(path: str, chunk_rows: int, name: str) -> Iterator[InputChunk]:
    """A CSV's chunks, each record's fields counted against the header's, the
    well-formed records then parsed by pandas.

    Where no field is quoted, a record is a line and its fields its commas plus one,
    counted without a Python step per line; from the first quote (or line ending in a
    lone carriage return) on, the csv module splits the records: a quoted field may
    hold commas and line breaks.
    """
    with open(path, "rb") as file, _csv_errors(name):
        header = next((line for line in file if not line.isspace()), None)
        if header is None:
            raise _no_header(name)
        if _lone_carriage_return(header):  # lines end in "\r" alone: the csv module's work
            file.seek(0)
            yield from _text_chunks(io.TextIOWrapper(file, "utf-8-sig", newline=""), chunk_rows)
            return
        header = header.removeprefix(codecs.BOM_UTF8)
        width = len(next(csv.reader([header.decode("utf-8")])))
        while True:
            start = file.tell()
            if not (lines := list(itertools.islice(file, chunk_rows))):
                return
            block = b"".join(lines)
            if b'"' in block or _lone_carriage_return(block):
                file.seek(start)
                text = io.TextIOWrapper(file, encoding="utf-8", newline="")
                yield from _quoted_chunks(text, header.decode("utf-8"), width, chunk_rows)
                return
            yield _unquoted_chunk(header, lines, block, width)


def _lone_carriage_return(text: bytes) -> bool:
    return text.count(b"\r") != text.count(b"\r\n")


def _text_chunks(text: Iterator[str], chunk_rows: int) -> Iterator[InputChunk]:
    """The chunks of a CSV read as text, split at any line ending, by the csv module."""
    header = next(line for line in text if not line.isspace())
    width = len(next(csv.reader([header])))
    yield from _quoted_chunks(text, header, width, chunk_rows)


def _unquoted_chunk(header: bytes, lines: list[bytes], block: bytes, width: int) -> InputChunk:
    """The chunk of `lines` (`block` joined), none of which quotes a field."""
    import numpy as np

    count = len(lines)
    records = ~np.fromiter(map(bytes.isspace, lines), dtype=bool, count=count)  # not blank
    commas = np.fromiter(map(bytes.count, lines, itertools.repeat(b",")), np.int64, count)
    good = records & (commas == width - 1)
    place = np.cumsum(records) - 1  # each line's place among the records (not blank lines)
    if good.sum() < records.sum():
        block = b"".join(itertools.compress(lines, good))
    ragged = [
        RaggedRow(int(place[i]), int(commas[i]) + 1, _as_written(lines[i].decode(errors="replace")))
        for i in np.flatnonzero(records & ~good)
    ]
    return _parsed_chunk(header, block, place[good], ragged)


def _as_written(line: str) -> str:
    """A ragged row as its reason quotes it."""
    return line.rstrip("\r\n")[:RAGGED_TEXT_CHARS]


def _quoted_chunks(
    lines: Iterator[str], header: str, width: int, chunk_rows: int
) -> Iterator[InputChunk]:
    """The chunks of the records of `lines` (text, split at any line ending), split by
    the csv module."""
    source = _RecordText(lines)
    records = csv.reader(source)
    while True:
        kept, positions, ragged = _split_records(source.each(records), chunk_rows, width)
        if not kept and not ragged:
            return
        yield _parsed_chunk(header, "".join(kept), positions, ragged)


class _RecordText:
    """A file's lines as the csv module reads them, each record's text kept beside it."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._taken: list[str] = []

    def __iter__(self) -> _RecordText:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def each(self, records: Iterator[list[str]]) -> Iterator[tuple[list[str], str]]:
        """(fields, text as written) of each record that is not a blank line; pandas
        skips blank lines too."""
        for record in records:
            text = self._taken[0] if len(self._taken) == 1 else "".join(self._taken)
            self._taken.clear()
            if text.strip():
                yield record, text


def _split_records(
    records: Iterator[tuple[list[str], str]], limit: int, width: int
) -> tuple[list[str], list[int], list[RaggedRow]]:
    """Up to `limit` records: the text of those of `width` fields and their places,
    and the others as ragged rows."""
    kept: list[str] = []
    positions: list[int] = []
    ragged: list[RaggedRow] = []
    for position, (record, text) in enumerate(records):
        if len(record) == width:
            kept.append(text)
            positions.append(position)
        else:
            ragged.append(RaggedRow(position, len(record), _as_written(text)))
        if position + 1 == limit:
            break
    return kept, positions, ragged


def _parsed_chunk(
    header: bytes | str, body: bytes | str, positions: Sequence[int], ragged: list[RaggedRow]
) -> InputChunk:
    """The well-formed records `body` as pandas reads a CSV of them under `header`."""
    import numpy as np
    import pandas as pd

    text = header + body
    source = io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text)
    rows = pd.read_csv(source, index_col=False)
    return InputChunk(rows, np.asarray(positions, dtype=np.int64), ragged)


@contextlib.contextmanager
def _csv_errors(name: str) -> Iterator[None]:
    """A CSV that cannot be read as a ScoringError naming it and what is wrong."""
    import pandas as pd

    try:
        yield
    except UnicodeDecodeError as error:
        raise ScoringError(
            f"--input {name!r} is not UTF-8 text ({error}): save it as UTF-8 CSV."
        ) from None
    except pd.errors.EmptyDataError:
        raise _no_header(name) from None
    except (csv.Error, pd.errors.ParserError) as error:
        raise ScoringError(f"Cannot read {name!r} as CSV: {error}") from None


def _no_header(name: str) -> ScoringError:
    return ScoringError(
        f"--input {name!r} holds only blank lines: no header row. Write the column names "
        "on its first line (a file of zero bytes is an empty input)."
    )


@contextlib.contextmanager
def _parquet_errors(name: str) -> Iterator[None]:
    """A Parquet file that cannot be read as a ScoringError naming it and what is wrong."""
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, OSError) as error:
        raise ScoringError(
            f"--input {name!r} is not a readable Parquet file ({error}): check that it was "
            "written whole, or pass it as CSV."
        ) from None


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
