"""The output: scored rows as Parquet parts, staged by the tasks, then assembled in order
into one file (and the refused rows into its rejects file), each moved into place whole.

Nothing is written to the output's location unless the whole run succeeds: the parts
wait in the staging area (`locations`) until `publish_output`. pandas and pyarrow are
imported inside the functions.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from batch_scoring.locations import fetch, join_location, publish, store
from batch_scoring.rows import no_rejects
from common.data import DatasetSchema

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

OUTPUT_COLUMNS = ("prediction", "confidence", "id", "model_version", "scored_at")


def scored_frame(
    inputs: pd.DataFrame,
    predictions: Sequence[Any],
    confidences: Sequence[float],
    ids: Sequence[str],
    model_version: str,
    scored_at: Any,
) -> pd.DataFrame:
    """The input rows with `prediction`, `confidence`, `id`, `model_version`, `scored_at`."""
    import pandas as pd

    output = inputs.reset_index(drop=True).drop(columns=list(OUTPUT_COLUMNS), errors="ignore")
    output["prediction"] = pd.Series(predictions, dtype=object).astype(str)
    output["confidence"] = pd.Series(confidences, dtype="float64")
    output["id"] = pd.Series(ids, dtype=object)
    output["model_version"] = str(model_version)
    output["scored_at"] = pd.Timestamp(scored_at)
    return output


def empty_output(columns: Sequence[str], schema: DatasetSchema) -> pd.DataFrame:
    """An output with no rows: the input's columns (features typed) and the output's."""
    import pandas as pd

    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in columns})
    for column in schema.numeric_features:
        frame[column] = frame[column].astype("float64") if column in frame else None
    return scored_frame(frame, [], [], [], "", pd.Timestamp.now(tz="UTC")).astype(
        {"model_version": object}
    )


def write_part(frame: pd.DataFrame, path: str) -> pa.Schema:
    """Write one part as Parquet; return its schema (for `output_schema`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path)
    return table.schema


def stage_part(frame: pd.DataFrame, staging: str, name: str, directory: str) -> str:
    """Write `frame` as the Parquet part `name` of the staging area (through a local file
    in `directory`); return its location."""
    local = os.path.join(directory, name)
    write_part(frame, local)
    location = join_location(staging, name)
    store(local, location)
    os.remove(local)
    return location


def output_schema(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """One schema for parts whose types differ (a chunk whose column is all missing,
    integers in one and decimals in another); a column that cannot agree becomes text."""
    import pyarrow as pa

    schemas = [schema.remove_metadata() for schema in schemas]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    fields = []
    for name in schemas[0].names:
        candidates = [s.field(name) for s in schemas if name in s.names]
        try:
            unified = pa.unify_schemas(
                [pa.schema([c]) for c in candidates], promote_options="permissive"
            )
            fields.append(unified.field(name))
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            fields.append(pa.field(name, pa.string()))
    return pa.schema(fields)


def assemble(parts: Sequence[str], schema: pa.Schema, path: str) -> int:
    """Append the Parquet `parts`, in order, into one file at `path`; return its rows.

    One part is in memory at a time: each becomes a row group of the output.
    """
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for part in parts:
            table = pq.read_table(part)
            table = table.select(schema.names) if table.schema.names != schema.names else table
            writer.write_table(table.cast(schema))
            rows += table.num_rows
    return rows


def publish_output(
    scored_parts: Sequence[str],
    reject_parts: Sequence[str],
    *,
    input_columns: Sequence[str],
    schema: DatasetSchema,
    output_location: str,
    rejects_location: str,
    run_id: str,
) -> int:
    """Assemble the staged parts into the output and its rejects file, then move each
    into place in one step; return the output's rows.

    With no part, each file is still written, empty, so that a rerun never leaves an
    older run's rows beside the new ones.
    """
    with tempfile.TemporaryDirectory() as directory:
        output, written = _assemble_staged(
            scored_parts, empty_output(input_columns, schema), directory, "output.parquet"
        )
        rejects, _ = _assemble_staged(
            reject_parts, no_rejects(input_columns), directory, "rejects.parquet"
        )
        publish(output, output_location, run_id)
        publish(rejects, rejects_location, run_id)
    return written


def _assemble_staged(
    locations: Sequence[str], empty: pd.DataFrame, directory: str, name: str
) -> tuple[str, int]:
    """The staged parts at `locations` (or `empty`, without any) as one local file."""
    import pyarrow.parquet as pq

    parts = [fetch(location, directory) for location in locations]
    if not parts:
        parts = [os.path.join(directory, f"empty-{name}")]
        write_part(empty, parts[0])
    path = os.path.join(directory, name)
    rows = assemble(parts, output_schema([pq.read_schema(part) for part in parts]), path)
    return path, rows
