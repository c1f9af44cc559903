"""Batch scoring: files local or on S3, chunks, rejects, the atomic output, the card's figures.

The scoring pipeline (src/pipelines/scoring.py) keeps its steps thin with these plain
functions. Files travel through a staging area beside the output (a hidden directory
for a local output, a prefix beside the key for an s3:// one), which every task can
reach: `start` writes the valid rows of each chunk and the refused ones there, each
chunk task its scored rows, and the join assembles them into the output, which
appears in one move. Nothing here imports the model server's code: the feature
checks arrive as an object with `validate_rows`, the scorer as one with `score`.

pandas, pyarrow, Metaflow's S3 client and Evidently are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import resource
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metaflow.exception import MetaflowException

from common.data import S3_SCHEME, DatasetSchema

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from common.settings import MonitoringSettings

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
OUTPUT_COLUMNS = ("prediction", "confidence", "id", "model_version", "scored_at")
# What a rejects file holds besides the input columns (as text, as they came).
REJECT_COLUMNS = ("row", "field", "problem", "reason")
# A refused kind of the forward pass, beside inference.features' kinds.
OUT_OF_RANGE = "out of range"


class ScoringError(MetaflowException):
    """A scoring input, output or parameter is wrong; the message says how to fix it."""

    headline = "Scoring error"


# --- locations ----------------------------------------------------------------------------


def is_s3(location: str) -> bool:
    return location.startswith(S3_SCHEME)


def input_format(location: str) -> str:
    """`csv` or `parquet`, from the name's suffix."""
    suffix = Path(location.split("?", 1)[0]).suffix.lower()
    if suffix not in FORMATS:
        raise ScoringError(
            f"--input {location!r}: unknown format {suffix or '(no suffix)'!r}. Pass a CSV "
            "(.csv) or a Parquet file (.parquet, .pq), local or s3://."
        )
    return FORMATS[suffix]


def check_locations(input_location: str, output_location: str) -> None:
    """Refuse an output that cannot be written as asked, before any work."""
    input_format(input_location)
    if not output_location:
        raise ScoringError("--output is required: a Parquet file path or s3:// URL to write.")
    if is_s3(output_location) and not output_location.removeprefix(S3_SCHEME).partition("/")[2]:
        raise ScoringError(f"--output {output_location!r} names a bucket, not an object.")
    if _normalized(input_location) == _normalized(output_location):
        raise ScoringError(
            f"--output is the --input ({input_location!r}): write the predictions elsewhere, "
            "the input must stay as it is."
        )


def _normalized(location: str) -> str:
    return location if is_s3(location) else os.path.abspath(location)


def rejects_location(output_location: str) -> str:
    """Where the refused rows go: beside the output, `<name>.rejects.parquet`."""
    for suffix in (".parquet", ".pq"):
        if output_location.endswith(suffix):
            return output_location[: -len(suffix)] + ".rejects.parquet"
    return output_location + ".rejects.parquet"


def staging_location(output_location: str, run_id: str) -> str:
    """A run's own area beside the output, where its tasks exchange files."""
    if is_s3(output_location):
        return f"{output_location}.staging-{run_id}/"
    path = Path(output_location).resolve()
    return str(path.with_name(f".{path.name}.staging-{run_id}"))


def join_location(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}" if is_s3(directory) else os.path.join(directory, name)


def fetch(location: str, directory: str) -> str | None:
    """A local path holding the file at `location` (downloaded if s3://); None if absent."""
    if not is_s3(location):
        return location if os.path.isfile(location) else None
    from metaflow import S3

    with S3() as s3:
        found = s3.get(location, return_missing=True)
        if not found.exists:
            return None
        local = os.path.join(directory, Path(found.key).name or "object")
        shutil.move(found.path, local)
    return local


def store(local_path: str, location: str) -> None:
    """Put a local file at `location` (a staging place: not atomic, nobody reads it yet)."""
    if is_s3(location):
        from metaflow import S3

        with S3() as s3:
            s3.put_files([(location, local_path)])
        return
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local_path, location)


def publish(local_path: str, location: str, run_id: str) -> None:
    """Make `local_path` the file at `location` in one step: a reader sees the old or the new.

    Local: written to a temporary name in the same directory, then `os.replace`. S3:
    uploaded to a temporary key, copied to the final key (one object write S3 makes
    visible whole), and the temporary key deleted.
    """
    if not is_s3(location):
        destination = Path(location)
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.partial-{run_id}")
        shutil.copyfile(local_path, partial)
        os.replace(partial, destination)
        return
    partial = f"{location}.partial-{run_id}"
    store(local_path, partial)
    client, _ = _s3_client()
    bucket, key = _bucket_key(location)
    try:
        client.copy({"Bucket": bucket, "Key": _bucket_key(partial)[1]}, bucket, key)
    finally:
        client.delete_object(Bucket=bucket, Key=_bucket_key(partial)[1])


def remove_staging(location: str) -> None:
    """Delete a run's staging area (what it holds is in the output, or was refused)."""
    if not is_s3(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    from metaflow import S3

    with S3() as s3:
        keys = [_bucket_key(item.url)[1] for item in s3.list_recursive([location])]
    client, _ = _s3_client()
    bucket = _bucket_key(location)[0]
    for start in range(0, len(keys), 1000):  # the most one request deletes
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def _bucket_key(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix(S3_SCHEME).partition("/")
    return bucket, key


def _s3_client() -> tuple[Any, Any]:
    """boto3's S3 client as Metaflow configures it (credentials, METAFLOW_S3_ENDPOINT_URL)."""
    from metaflow.plugins.datatools.s3.s3util import get_s3_client

    return get_s3_client()


# --- the model ---------------------------------------------------------------------------


def download_model(name: str, version: str, directory: str) -> str:
    """Download registered `name` version `version` into `directory`; return its path."""
    import mlflow

    # One progress bar per artifact would fill the task's log.
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version}", dst_path=os.path.join(directory, "model")
    )


def pack_model(model_directory: str, artifact_paths: Sequence[str]) -> dict[str, bytes]:
    """The files scoring needs of a downloaded model (`MLmodel` and its artifacts), by
    path relative to the directory: small (tens of kilobytes), so they travel as an
    artifact of the run, and the chunk tasks need neither the registry nor MLflow."""
    root = Path(model_directory)
    paths = [root / "MLmodel", *(Path(path) for path in artifact_paths)]
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in paths}


def unpack_model(files: dict[str, bytes], directory: str) -> str:
    """Write `pack_model`'s files under `directory`/model; return that model directory."""
    root = Path(directory) / "model"
    for relative, content in files.items():
        path = root / relative
        if root.resolve() not in path.resolve().parents:
            raise ScoringError(f"A staged model file lies outside its directory: {relative!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return str(root)


# --- reading the input --------------------------------------------------------------------


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


# --- rows in, rows out --------------------------------------------------------------------


def valid_frame(frame: pd.DataFrame, kept: np.ndarray, columns: dict[str, Any]) -> pd.DataFrame:
    """The kept rows of `frame`, their features as validated (numbers as float64)."""
    valid = frame.iloc[kept].reset_index(drop=True)
    for name, values in columns.items():
        if name in valid:
            valid[name] = values
    return valid


def rejects_frame(frame: pd.DataFrame, problems: Sequence[Any], first_row: int) -> pd.DataFrame:
    """Refused rows with their input values as text (as they came) and why each was refused.

    `problems` have `row` (position in `frame`), `field`, `kind` and `reason`; `row` in
    the result is the row's position in the whole input (0 is the first data row).
    """
    import pandas as pd

    positions = [problem.row for problem in problems]
    rejected = frame.iloc[positions].reset_index(drop=True)
    texts = {
        column: [None if _absent(value) else str(value) for value in rejected[column]]
        for column in rejected.columns
    }
    details = {
        "row": [first_row + position for position in positions],
        "field": [problem.field for problem in problems],
        "problem": [problem.kind for problem in problems],
        "reason": [problem.reason for problem in problems],
    }
    return pd.DataFrame({**texts, **details})


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class ForwardProblem:
    """A row the model could not answer (its values overflow the network)."""

    row: int
    field: str = ""
    kind: str = OUT_OF_RANGE
    reason: str = (
        "the values are too far out of range for the model to answer; check the units "
        "of the numbers."
    )


def score_rows(
    scorer: Any, columns: dict[str, np.ndarray]
) -> tuple[list[Any], list[float], list[int]]:
    """`scorer.score` on validated rows, setting aside the rows it cannot answer.

    The server refuses a whole request for one such row; here the rows around it are
    still scored: halves are scored until each unanswerable row stands alone (few
    extra forward passes: it is rare). Returns (predictions, confidences, positions of
    the answered rows).
    """
    count = len(next(iter(columns.values()))) if columns else 0
    predictions: list[Any] = []
    confidences: list[float] = []
    answered: list[int] = []
    pending = [(0, count)]
    while pending:
        start, stop = pending.pop()
        if start == stop:
            continue
        part = {name: values[start:stop] for name, values in columns.items()}
        try:
            scored, confidence = scorer.score(part)
        except ValueError:  # inference.features.InvalidInput
            if stop - start > 1:
                middle = (start + stop) // 2
                pending += [(middle, stop), (start, middle)]  # the first half next
            continue
        predictions += scored
        confidences += confidence
        answered += range(start, stop)
    return predictions, confidences, answered


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


class Sample:
    """A uniform random sample of at most `size` rows of a table read chunk by chunk.

    Every row gets a random key; the sample is the rows with the smallest keys
    (bottom-k), so it never holds more than `size` rows plus one chunk.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        import numpy as np

        self.size = size
        self._random = np.random.default_rng(seed)
        self._rows: pd.DataFrame | None = None
        self._keys: np.ndarray | None = None

    def add(self, rows: pd.DataFrame) -> None:
        import numpy as np
        import pandas as pd

        keys = self._random.random(len(rows))
        if self._rows is not None:
            rows = pd.concat([self._rows, rows.reset_index(drop=True)], ignore_index=True)
            keys = np.concatenate([self._keys, keys])
        keep = np.sort(np.argsort(keys, kind="stable")[: self.size])
        self._rows, self._keys = rows.iloc[keep].reset_index(drop=True), keys[keep]

    @property
    def rows(self) -> pd.DataFrame | None:
        return self._rows


# --- the output ---------------------------------------------------------------------------


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


def write_part(frame: pd.DataFrame, path: str) -> pa.Schema:
    """Write one part as Parquet; return its schema (for `output_schema`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path)
    return table.schema


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


# --- checks and figures -------------------------------------------------------------------


def invalid_fraction_error(rejected: int, rows: int, max_fraction: float) -> str | None:
    """Why the run must fail because too many rows were refused, or None."""
    if rows == 0 or rejected / rows <= max_fraction:
        return None
    return (
        f"{rejected} of {rows} rows ({rejected / rows:.2%}) were refused, more than "
        f"--max-invalid-fraction {max_fraction} allows; nothing was written to the output. "
        "The log lists the refused rows by reason: fix the input or raise the fraction."
    )


def check_parameters(chunk_rows: int, max_invalid_fraction: float) -> None:
    if chunk_rows < 1:
        raise ScoringError(f"--chunk-rows must be a positive integer, got {chunk_rows}.")
    if not 0.0 <= max_invalid_fraction <= 1.0:
        raise ScoringError(
            f"--max-invalid-fraction must be a fraction in [0, 1], got {max_invalid_fraction}."
        )


def reject_counts(problems: Sequence[Any]) -> Counter[tuple[str, str]]:
    """Refused rows by (field, kind of problem)."""
    return Counter((problem.field, problem.kind) for problem in problems)


def class_distribution(
    scored: Counter[str] | dict[str, int], training: Sequence[Any] | None
) -> list[list[Any]]:
    """Rows per class, scored and in the training data, each also as a share."""
    trained = Counter(str(label) for label in training) if training is not None else Counter()
    scored_total, trained_total = sum(scored.values()), sum(trained.values())
    table = []
    for name in sorted(set(scored) | set(trained)):
        table.append(
            [
                name,
                int(scored.get(name, 0)),
                _share(scored.get(name, 0), scored_total),
                int(trained.get(name, 0)),
                _share(trained.get(name, 0), trained_total),
            ]
        )
    return table


def _share(count: int, total: int) -> str:
    return f"{count / total:.1%}" if total else "-"


def peak_memory_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the data-quality gate ----------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    """What the gate concluded about the input sample against the training data."""

    rows: int
    drift_detected: bool = False
    drifted_columns: list[str] = field(default_factory=list)
    failed_tests: list[str] = field(default_factory=list)
    page: str = ""  # Evidently's drift report, a self-contained HTML page

    def describe(self) -> str:
        if self.rows == 0:
            return "No valid rows to compare with the training data."
        verdict = (
            f"drift in {', '.join(self.drifted_columns)}" if self.drift_detected else "no drift"
        )
        failed = (
            f"; failed data-quality tests: {len(self.failed_tests)}" if self.failed_tests else ""
        )
        return f"{verdict} on a sample of {self.rows} rows{failed}."


def quality_gate(
    reference: pd.DataFrame,
    sample: pd.DataFrame | None,
    schema: DatasetSchema,
    settings: MonitoringSettings,
) -> GateResult:
    """The monitoring pipeline's data summary and drift checks on the input sample."""
    if sample is None or len(sample) == 0:
        return GateResult(rows=0, page="<p>No valid rows to compare.</p>")
    from model_monitoring.reports import drift_report, production_frame, summary_report

    current = production_frame(sample, schema)[schema.features]
    reference = production_frame(reference, schema)[schema.features]
    _, summary = summary_report(reference, current, schema)
    snapshot, drift = drift_report(reference, current, schema, settings)
    failed = [test["name"] for test in summary.tests if test["status"] == "FAIL"]
    return GateResult(
        rows=len(current),
        drift_detected=bool(drift.values["drift_detected"]),
        drifted_columns=list(drift.values["drifted_columns"]),
        failed_tests=failed,
        page=snapshot.get_html_str(as_iframe=False),
    )


@contextlib.contextmanager
def background_process() -> Iterator[Any]:
    """An executor of one forked process, for work that overlaps the caller's (the gate).

    Forked, it inherits what this process imported and costs no new interpreter; where
    processes cannot be forked, the work runs in this process when its result is asked.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        yield _InProcess()
        return
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool


class _InProcess:
    def submit(self, function: Any, *args: Any) -> Any:
        future: Future[Any] = Future()
        try:
            future.set_result(function(*args))
        except Exception as error:
            future.set_exception(error)
        return future


# --- the card -----------------------------------------------------------------------------


def scoring_card(
    scored: int,
    rows: int,
    reasons: dict[tuple[str, str], int],
    classes: dict[str, int],
    training_classes: Sequence[Any] | None,
    seconds: float,
    gate: str,
    drift: bool,
    output: str,
) -> list[Any]:
    """The run's card: rows scored and refused by reason, classes against training,
    throughput and the quality gate's verdict."""
    from metaflow.cards import Markdown, Table

    refused = sum(reasons.values())
    rate = scored / seconds if seconds else 0.0
    components = [
        Markdown(
            f"# Batch scoring\n**{scored}** of {rows} rows scored, **{refused}** refused; "
            f"output `{output}`.\n\n**Throughput**: {rate:,.0f} rows/s ({seconds:.1f} s "
            f"from the start of the run to the output in place)."
        ),
        Markdown(f"## Quality gate\n{'**Drift.** ' if drift else ''}{gate}"),
        Markdown("## Refused rows, by reason"),
    ]
    if reasons:
        body = [[field or "(all)", kind, count] for (field, kind), count in sorted(reasons.items())]
        components.append(Table(body, headers=["field", "problem", "rows"]))
    else:
        components.append(Markdown("None."))
    components += [
        Markdown("## Classes, scored and in the training data"),
        Table(
            class_distribution(classes, training_classes),
            headers=["class", "scored rows", "share", "training rows", "training share"],
        ),
    ]
    return components
