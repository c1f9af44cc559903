"""Batch scoring pipeline: score a file with a registered model version, as the server would.

    uv run src/pipelines/scoring.py run --input new.csv --output predictions.parquet \
        [--model-version champion] [--chunk-rows 100000] [--max-invalid-fraction 0.01] \
        [--fail-on-drift] [--no-capture]

    start (check, split into chunks, set refused rows aside, quality gate)
      ─ score_chunk (a task per chunk) ─ assemble (output, rejects, card) ─ end

Every row goes through the model server's own validation, transform and forward pass,
in process (`inference.scorer.load_scorer`): a row the server would refuse is written,
with the reason, to `<output>.rejects.parquet` instead. The output is Parquet: the
input's columns plus `prediction`, `confidence`, `id`, `model_version`, `scored_at`.
Input and output are local paths or s3:// URLs (Metaflow's S3 client); with s3:// ones
the chunks run on AWS Batch or Kubernetes too (`--with batch`, `--with kubernetes`).

Nothing is written to `--output` unless the whole run succeeds: `start` refuses a
missing column, too many refused rows (`--max-invalid-fraction`) and, with
`--fail-on-drift`, an input unlike the training data, before any row is scored or
captured; the chunks' files wait in a staging area beside the output until `assemble`
moves the assembled file into place in one step (see common/scoring.py). Scored rows
are captured through the backend with `source` `batch`, under the ids the output holds,
so `label_by_id` and the monitoring pipeline treat them as online traffic.

The quality gate compares a sample of the valid input rows with the data the version
was trained on (recorded with the model; the `--dataset` file for a model without it),
with the monitoring pipeline's data summary and drift checks and thresholds
(`monitoring:`). Evidently is imported by a forked process while `start` reads the input.

Deployed to a production scheduler it runs on `scoring.schedule` from the config.
"""

from metaflow import Parameter, card, config_expr, current, environment, schedule, step

from common.keras_runtime import keras_backend
from common.pipeline import Pipeline, backend

environment_variables = {"KERAS_BACKEND": keras_backend()}
DRIFT_CARD = "data_drift"
# Rows per capture transaction: the Local store's JSON records of 100,000 rows take
# ~150 MB beside the chunk's own rows.
CAPTURE_ROWS_PER_CALL = 25_000


@schedule(cron=config_expr("project.scoring.schedule"))
class Scoring(Pipeline):
    """Score a file in chunks with a registered version; gate, capture and report it."""

    input_location = Parameter(
        "input", help="CSV or Parquet file to score: a local path or an s3:// URL.", default=""
    )
    output_location = Parameter(
        "output", help="Parquet file to write: a local path or an s3:// URL.", default=""
    )
    model_version = Parameter(
        "model-version", help="Registry version number or alias to score with.", default="champion"
    )
    chunk_rows = Parameter("chunk-rows", help="Rows per scoring task.", default=100_000)
    max_invalid_fraction = Parameter(
        "max-invalid-fraction",
        help="Fail, writing nothing, when more than this share of rows is refused.",
        default=0.01,
    )
    fail_on_drift = Parameter(
        "fail-on-drift",
        help="Fail before anything is written when the input drifts from the training data.",
        is_flag=True,
        default=False,
    )
    no_capture = Parameter(
        "no-capture",
        help="Do not capture the predictions in the backend's store.",
        is_flag=True,
        default=False,
    )

    @card(type="html", id=DRIFT_CARD, options={"attribute": "drift_page"})
    @step
    def start(self):
        """Check the request, write the valid rows in chunks, set refused ones aside, gate.

        Refusals that depend on the whole input (a missing column, too many refused
        rows, drift with --fail-on-drift) happen here, before anything is scored.
        """
        import time
        from dataclasses import replace

        from batch_scoring.files import (
            ScoringError,
            background_process,
            check_locations,
            check_parameters,
            invalid_fraction_error,
            peak_memory_mib,
            quality_gate,
            remove_staging,
            staging_location,
        )
        from model_monitoring.reports import import_evidently

        self.started_at = time.time()
        check_parameters(self.chunk_rows, self.max_invalid_fraction)
        check_locations(self.input_location, self.output_location)
        self.staging = staging_location(self.output_location, current.run_id)
        with background_process() as worker:
            # The part of Evidently the gate's reports use, as the monitoring pipeline's
            # report process imports it: seconds, on the other core.
            warming = worker.submit(import_evidently)
            try:
                self.split_input()
                gate = worker.submit(
                    quality_gate, self.reference, self.sample, self.schema, self.settings.monitoring
                )
                warming.result()
                self.gate = gate.result()
            except BaseException:
                remove_staging(self.staging)
                raise
        # The page is a card of its own, megabytes: stored once.
        self.drift_page, self.gate = self.gate.page, replace(self.gate, page="")
        self.logger.info("Quality gate: %s", self.gate.describe())
        problem = invalid_fraction_error(self.rejected_rows, self.rows, self.max_invalid_fraction)
        if problem is None and self.fail_on_drift and self.gate.drift_detected:
            problem = f"--fail-on-drift: {self.gate.describe()} Nothing was written."
        if problem is not None:
            remove_staging(self.staging)
            raise ScoringError(problem)
        del self.sample  # the gate's input: no need to store it
        self.start_memory_mib = peak_memory_mib()
        self.next(self.score_chunk, foreach="chunks")

    def split_input(self) -> None:
        """Resolve the version; read the input chunk by chunk into the staging area.

        Sets `chunks` (one per task), the counts, the reference and the gate's sample.
        """
        import tempfile

        import mlflow

        from batch_scoring.files import (
            ScoringError,
            check_columns,
            fetch,
            input_format,
            read_columns,
        )
        from common.registry import resolve_version

        self.model_name = self.settings.model.name
        try:
            self.scored_version = resolve_version(
                mlflow.MlflowClient(), self.model_name, self.model_version
            )
        except LookupError as error:
            raise ScoringError(f"--model-version {self.model_version}: {error}") from None
        self.file_format = input_format(self.input_location)
        with tempfile.TemporaryDirectory() as directory:
            local = fetch(self.input_location, directory)
            if local is None:
                raise ScoringError(f"--input {self.input_location!r}: no such file or object.")
            # A CSV of zero bytes has no header either: an empty input all the same.
            self.input_columns = read_columns(local, self.file_format) or self.schema.features
            check_columns(self.input_columns, self.schema, self.input_location)
            self.write_chunks(local, directory)
        self.reference, self.training_classes = self.training_reference()
        self.logger.info(
            "%d rows in %d chunk(s) for %s version %s; %d refused.",
            self.rows, len(self.chunks), self.model_name, self.scored_version, self.rejected_rows,
        )  # fmt: skip

    def write_chunks(self, local_input: str, directory: str) -> None:
        """Validate each chunk of the input; stage its valid rows and its refused ones."""
        import os

        from batch_scoring.files import (
            Sample,
            join_location,
            numbers_from_text,
            read_chunks,
            reject_counts,
            rejects_frame,
            store,
            valid_frame,
            write_part,
        )

        features = self.feature_checks(directory)
        numeric = self.schema.numeric_features
        sample = Sample(self.settings.monitoring.max_rows)
        self.chunks, self.rejects_parts, self.rows, self.rejected_rows = [], [], 0, 0
        self.reject_reasons = {}
        examples = []
        for index, chunk in enumerate(read_chunks(local_input, self.file_format, self.chunk_rows)):
            if self.file_format == "csv":
                chunk = numbers_from_text(chunk, numeric)
            columns, kept, problems = features.validate_rows(chunk)
            valid = valid_frame(chunk, kept, columns)
            valid["__row__"] = kept + self.rows  # the row's place in the input, for rejects
            sample.add(valid[self.schema.features])
            local = os.path.join(directory, f"chunk-{index:05d}.parquet")
            write_part(valid, local)
            location = join_location(self.staging, f"chunk-{index:05d}.parquet")
            store(local, location)
            os.remove(local)
            self.chunks.append({"index": index, "rows": len(valid), "location": location})
            if problems:
                local = os.path.join(directory, f"rejects-{index:05d}.parquet")
                write_part(rejects_frame(chunk, problems, self.rows), local)
                self.rejects_parts.append(
                    join_location(self.staging, f"rejects-{index:05d}.parquet")
                )
                store(local, self.rejects_parts[-1])
                os.remove(local)
                for key, count in reject_counts(problems).items():
                    self.reject_reasons[key] = self.reject_reasons.get(key, 0) + count
                examples += [f"row {p.row + self.rows}: {p.reason}" for p in problems[:3]]
            self.rows += len(chunk)
            self.rejected_rows += len(problems)
        if not self.chunks:  # an empty input: one task, which has nothing to score
            self.chunks = [{"index": 0, "rows": 0, "location": None}]
        for (name, kind), count in sorted(self.reject_reasons.items()):
            self.logger.warning("Refused %d row(s): %s in field %r.", count, kind, name)
        for example in examples[:5]:
            self.logger.warning("Refused %s", example)
        self.sample = sample.rows

    def feature_checks(self, directory: str):
        """The version's own feature checks (`inference.features`), without its network;
        the model's files are kept as `model_files` for the chunk tasks.

        The chunk tasks load the model from those files (`inference.scorer`), so they
        import neither MLflow nor, for a model with its `transform` and `forward`
        artifacts, scikit-learn or Keras: seconds saved in every task.
        """
        from batch_scoring.files import ScoringError, download_model, pack_model
        from inference.scorer import load_features, model_artifacts

        model = download_model(self.model_name, self.scored_version, directory)
        try:
            artifacts = model_artifacts(model)
            features = load_features(artifacts)
        except ValueError as error:
            raise ScoringError(str(error)) from None
        self.model_files = pack_model(model, list(artifacts.values()))
        return features

    def training_reference(self):
        """The training rows of the version (the `--dataset` file without them) and their
        target, as the monitoring pipeline takes its reference."""
        from common.data import load_dataset
        from common.pipeline import dataset_seed
        from common.tracking import training_data
        from model_monitoring.reports import sample_rows

        schema = self.schema
        reference = training_data(self.model_name, self.scored_version)
        if reference is None:
            self.logger.warning("No training data recorded with the model: using %s.", self.dataset)
            reference = load_dataset(self.dataset, schema, dataset_seed(current.is_production))
        classes = (
            reference[schema.target].astype(str).tolist() if schema.target in reference else None
        )
        return sample_rows(reference[schema.features], self.settings.monitoring.max_rows), classes

    @backend
    @environment(vars=environment_variables)
    @step
    def score_chunk(self):
        """Score one chunk as the server would; stage the output rows; capture them."""
        import time

        from batch_scoring.files import peak_memory_mib

        self.chunk = self.input
        started = time.time()
        self.scored_rows, self.class_counts, self.scored_part, self.unanswered_part = (
            0,
            {},
            None,
            None,
        )
        self.unanswered_rows = 0
        if self.chunk["rows"]:
            self.score_staged_rows()
        self.chunk_seconds = time.time() - started
        self.chunk_memory_mib = peak_memory_mib()
        self.logger.info(
            "Chunk %d: %d rows scored in %.1f s (peak memory %.0f MiB).",
            self.chunk["index"], self.scored_rows, self.chunk_seconds, self.chunk_memory_mib,
        )  # fmt: skip
        self.next(self.assemble)

    def score_staged_rows(self) -> None:
        """Read the chunk, validate, score, write its part of the output, capture it."""
        import os
        import tempfile
        from collections import Counter

        import pandas as pd

        from batch_scoring.files import (
            ForwardProblem,
            fetch,
            join_location,
            rejects_frame,
            score_rows,
            scored_frame,
            store,
            unpack_model,
            write_part,
        )
        from inference.capture import prediction_ids
        from inference.scorer import load_scorer

        index = self.chunk["index"]
        with tempfile.TemporaryDirectory() as directory:
            scorer = load_scorer(unpack_model(self.model_files, directory))
            rows = pd.read_parquet(fetch(self.chunk["location"], directory))
            columns = scorer.features.validate(rows[self.schema.features])
            predictions, confidences, answered = score_rows(scorer, columns)
            if len(answered) < len(rows):  # rows no forward pass can answer: refused too
                refused = rows.drop(index=answered)
                problems = [ForwardProblem(position) for position in range(len(refused))]
                rejects = rejects_frame(refused.drop(columns="__row__"), problems, 0)
                rejects["row"] = refused["__row__"].tolist()  # their places in the input
                local = os.path.join(directory, "unanswered.parquet")
                write_part(rejects, local)
                self.unanswered_part = join_location(
                    self.staging, f"unanswered-{index:05d}.parquet"
                )
                store(local, self.unanswered_part)
                self.unanswered_rows = len(refused)
            ids = prediction_ids(len(answered))
            inputs = rows.iloc[answered].drop(columns="__row__")
            output = scored_frame(
                inputs,
                predictions,
                confidences,
                ids,
                self.scored_version,
                pd.Timestamp.now(tz="UTC"),
            )
            local = os.path.join(directory, "scored.parquet")
            write_part(output, local)
            self.scored_part = join_location(self.staging, f"scored-{index:05d}.parquet")
            store(local, self.scored_part)
        if not self.no_capture and answered:
            # In slices: the records a capture builds cost more memory than the rows.
            outputs = output[["prediction", "confidence", "id", "model_version"]]
            for start in range(0, len(answered), CAPTURE_ROWS_PER_CALL):
                positions = answered[start : start + CAPTURE_ROWS_PER_CALL]
                features = scorer.features.frame({n: v[positions] for n, v in columns.items()})
                part = outputs.iloc[start : start + CAPTURE_ROWS_PER_CALL]
                self.backend_impl.save(features, part.reset_index(drop=True), source="batch")
        self.scored_rows = len(answered)
        self.class_counts = dict(Counter(predictions))

    @card
    @step
    def assemble(self, inputs):
        """Assemble the output and the rejects file from the chunks and move them into
        place in one step each; report rows, refusals, classes, throughput and the gate."""
        import time

        from batch_scoring.files import (
            ScoringError,
            invalid_fraction_error,
            peak_memory_mib,
            remove_staging,
            scoring_card,
        )

        chunk_names = [
            "chunk", "scored_rows", "class_counts", "scored_part", "unanswered_part",
            "unanswered_rows", "chunk_seconds", "chunk_memory_mib",
        ]  # fmt: skip
        self.merge_artifacts(inputs, exclude=chunk_names)
        chunks = sorted(inputs, key=lambda task: task.chunk["index"])
        self.scored_rows = sum(task.scored_rows for task in chunks)
        self.unanswered_rows = sum(task.unanswered_rows for task in chunks)
        self.class_counts = {}
        for task in chunks:
            for name, count in task.class_counts.items():
                self.class_counts[name] = self.class_counts.get(name, 0) + count
        refused = self.rejected_rows + self.unanswered_rows
        problem = invalid_fraction_error(refused, self.rows, self.max_invalid_fraction)
        if problem is not None:
            remove_staging(self.staging)
            raise ScoringError(problem)
        self.publish_files(chunks)
        remove_staging(self.staging)
        self.seconds = time.time() - self.started_at
        self.rows_per_second = self.scored_rows / self.seconds if self.seconds else 0.0
        self.chunk_seconds = [task.chunk_seconds for task in chunks]
        self.memory_mib = {
            "start": self.start_memory_mib,
            "score_chunk": max(task.chunk_memory_mib for task in chunks),
        }
        self.memory_mib["assemble"] = peak_memory_mib()
        if self.unanswered_rows:
            self.reject_reasons[("", "out of range")] = self.unanswered_rows
        current.card.extend(
            scoring_card(
                self.scored_rows, self.rows, self.reject_reasons, self.class_counts,
                self.training_classes, self.seconds, self.gate.describe(),
                self.gate.drift_detected, self.output_location,
            )
        )  # fmt: skip
        self.next(self.end)

    def publish_files(self, chunks) -> None:
        """Write the output and the rejects file beside the staging area, then move each."""
        import os
        import tempfile

        import pyarrow.parquet as pq

        from batch_scoring.files import (
            assemble,
            empty_output,
            fetch,
            output_schema,
            publish,
            rejects_location,
            write_part,
        )

        self.rejects_location = rejects_location(self.output_location)
        with tempfile.TemporaryDirectory() as directory:
            parts = [fetch(task.scored_part, directory) for task in chunks if task.scored_part]
            if not parts:
                parts = [os.path.join(directory, "empty.parquet")]
                write_part(empty_output(self.input_columns, self.schema), parts[0])
            assembled = os.path.join(directory, "output.parquet")
            written = assemble(parts, output_schema([pq.read_schema(p) for p in parts]), assembled)
            rejects = [fetch(location, directory) for location in self.rejects_parts]
            rejects += [
                fetch(task.unanswered_part, directory) for task in chunks if task.unanswered_part
            ]
            if not rejects:
                rejects = [os.path.join(directory, "no-rejects.parquet")]
                write_part(self.no_rejects(), rejects[0])
            rejected = os.path.join(directory, "rejects.parquet")
            assemble(rejects, output_schema([pq.read_schema(p) for p in rejects]), rejected)
            publish(assembled, self.output_location, current.run_id)
            publish(rejected, self.rejects_location, current.run_id)
        self.logger.info(
            "Wrote %d rows to %s; %d refused rows to %s.",
            written, self.output_location, self.rejected_rows + self.unanswered_rows,
            self.rejects_location,
        )  # fmt: skip

    def no_rejects(self):
        """An empty rejects file, so a rerun never leaves an older run's refusals beside it."""
        import pandas as pd

        from batch_scoring.files import REJECT_COLUMNS

        columns = [*self.input_columns, *REJECT_COLUMNS]
        frame = pd.DataFrame({column: pd.Series(dtype="string") for column in columns})
        return frame.astype({"row": "int64"})

    @step
    def end(self):
        """Say what was written."""
        self.logger.info(
            "Scored %d of %d rows with %s version %s in %.1f s (%.0f rows/s); output %s.",
            self.scored_rows, self.rows, self.model_name, self.scored_version, self.seconds,
            self.rows_per_second, self.output_location,
        )  # fmt: skip


if __name__ == "__main__":
    Scoring()
