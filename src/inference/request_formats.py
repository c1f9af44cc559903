"""What a request body may be, and how many rows it holds before anything of it is decoded.

The model server takes three content types, named case-insensitively as HTTP wants:
JSON (`{"inputs": [...]}`, and MLflow's other JSON formats), CSV (a header line of
feature names, then one line per row) and Parquet (a table with feature columns).
`media_type` turns a Content-Type header into one of them, or says what is accepted.

`declared_rows` counts a Parquet body's rows from its footer (a 72 KB file can hold
millions of rows: decoding it first is what took a worker down) and a CSV body's by
its lines, so that an oversized batch is refused before it costs memory. `check_csv`
makes sure a CSV body has as many fields in every line as in its header before pandas
decodes it.

Used by the HTTP guard (`inference.http_guard`) and by the request guard
(`inference.request_guard`) in the server's process: the standard library, and
pyarrow for Parquet (MLflow has imported it there already).
"""

from __future__ import annotations

import csv
import io

from inference.features import InvalidInput

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
PARQUET_TYPE = "application/vnd.apache.parquet"
ACCEPTED_TYPES = (JSON_TYPE, CSV_TYPE, PARQUET_TYPE)
ACCEPTED = ", ".join(ACCEPTED_TYPES)


def too_many_rows(rows: int, max_rows: int) -> str:
    """The message for a request of more rows than the server takes."""
    return f"Too many rows: {rows}; the maximum per request is {max_rows}. Split the request."


class UnsupportedMediaType(ValueError):
    """A Content-Type the server does not take; the message says which it does."""


def media_type(content_type: str | bytes | None) -> str:
    """The accepted media type `content_type` names (case-insensitively), or
    UnsupportedMediaType. The only parameter allowed is `charset=utf-8`."""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    if content_type in ACCEPTED_TYPES:  # the usual spelling, at no cost
        return content_type
    if not content_type or not content_type.strip():
        raise UnsupportedMediaType(f"Missing Content-Type: send one of {ACCEPTED}.")
    kind, *parameters = (part.strip().lower() for part in content_type.split(";"))
    if kind not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {content_type[:100]!r} is not accepted: send one of {ACCEPTED}."
        )
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if parameter and (name.strip(), value.strip().strip('"')) != ("charset", "utf-8"):
            raise UnsupportedMediaType(
                f"Content-Type parameter {parameter[:100]!r} is not accepted: the body must "
                f"be UTF-8 (charset=utf-8, or no parameter) and one of {ACCEPTED}."
            )
    return kind


def declared_rows(body: bytes, kind: str, limit: int) -> int | None:
    """The rows a CSV or Parquet `body` holds, read without decoding its values; None
    for JSON, whose rows are counted as it is validated.

    A CSV's lines are counted first; only when there are more than `limit` are its
    records counted exactly (blank lines and line breaks inside quotes are not rows).
    Raises InvalidInput for a body that is not Parquet at all.
    """
    if kind == CSV_TYPE:
        lines = _csv_lines(body)
        return lines if lines <= limit else _csv_records(body)
    if kind == PARQUET_TYPE:
        return parquet_rows(body)
    return None


def _csv_lines(body: bytes) -> int:
    """Lines after the header, never fewer than the rows: csv ends a line at a CR too."""
    breaks = max(body.count(b"\n"), body.count(b"\r"))
    lines = breaks + (0 if not body or body.endswith((b"\n", b"\r")) else 1)
    return max(lines - 1, 0)


def _csv_records(body: bytes) -> int:
    """The CSV's records after the header, counted without keeping them."""
    text = io.StringIO(body.decode("utf-8-sig", errors="replace"))
    try:
        return max(sum(1 for line in csv.reader(text) if line) - 1, 0)
    except csv.Error:
        return _csv_lines(body)  # refused by name when it is decoded, if ever it is


def parquet_rows(body: bytes) -> int:
    """The rows a Parquet body holds, from its footer (InvalidInput if it has none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(pa.BufferReader(body)).metadata
    except (pa.ArrowException, OSError, ValueError) as error:
        raise InvalidInput(f"The body is not a readable Parquet file: {error}") from None
    groups = (metadata.row_group(index).num_rows for index in range(metadata.num_row_groups))
    # The footer's total and its row groups' could disagree in a crafted file: take the larger.
    return max(metadata.num_rows, sum(groups))


def check_csv(body: bytes) -> int:
    """The number of rows of a CSV body, once it is known to be UTF-8 CSV with a header
    line and as many fields in every line as in the header (InvalidInput otherwise).

    pandas, which decodes it, would take a row with one field more than the header for
    an index and shift every field of it; one with two more, or fewer, it refuses with
    a message naming neither row nor field. Blank lines are skipped, as pandas does.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"The CSV is not UTF-8: {error}.") from None
    header: list[str] | None = None
    rows = 0
    try:
        for record in csv.reader(io.StringIO(text), strict=True):
            if not record:
                continue
            if header is None:
                header = record
            elif len(record) != len(header):
                raise InvalidInput(
                    f"Row {rows}: {len(record)} fields, but the header names {len(header)}."
                )
            else:
                rows += 1
    except csv.Error as error:
        raise InvalidInput(f"Malformed CSV: {error}.") from None
    if header is None:
        raise InvalidInput("Empty CSV: send a header line of feature names, then one line a row.")
    if len(set(header)) != len(header):
        raise InvalidInput(f"The CSV header names a field twice: {header[:20]}.")
    return rows
