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
moves the assembled file into place in one step (see src/batch_scoring/locations.py).
Scored rows are captured through the backend with `source` `batch`, under the ids the
output holds, so `label_by_id` and the monitoring pipeline treat them as online traffic.

The quality gate compares a sample of the valid input rows with the data the version
was trained on (recorded with the model; the `--dataset` file for a model without it),
with the monitoring pipeline's data summary and drift checks and thresholds
(`monitoring:`). Evidently is imported by a forked process while `start` reads the input.

Deployed to a production scheduler it runs on `scoring.schedule` from the config. The
steps only orchestrate: the work is done by the modules of `src/batch_scoring/`.
"""

from metaflow import Parameter, card, config_expr, current, environment, schedule, step

from common.keras_runtime import keras_backend
from common.pipeline import Pipeline, backend

environment_variables = {"KERAS_BACKEND": keras_backend()}
DRIFT_CARD = "data_drift"
# What each chunk task adds to the flow's artifacts, which `assemble` adds up itself.
CHUNK_ARTIFACTS = [
    "chunk", "scored_rows", "class_counts", "scored_part", "unanswered_part",
    "unanswered_rows", "chunk_seconds", "chunk_memory_mib",
]  # fmt: skip


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

        from batch_scoring.background import background_process
        from batch_scoring.errors import refuse
        from batch_scoring.locations import staging_location, staging_removed_on_failure
        from batch_scoring.memory import peak_memory_mib
        from batch_scoring.quality_gate import gate_refusal, quality_gate
        from batch_scoring.request import check_locations, check_parameters
        from model_monitoring.evidently_import import import_evidently

        self.started_at = time.time()
        check_parameters(self.chunk_rows, self.max_invalid_fraction)
        check_locations(self.input_location, self.output_location)
        self.staging = staging_location(self.output_location, current.run_id)
        with background_process() as worker, staging_removed_on_failure(self.staging):
            # The part of Evidently the gate's reports use, as the monitoring pipeline's
            # report process imports it: seconds, on the other core.
            warming = worker.submit(import_evidently)
            sample = self.stage_input()
            gating = worker.submit(
                quality_gate, self.reference, sample, self.schema, self.settings.monitoring
            )
            warming.result()
            gate = gating.result()
        # The page is a card of its own, megabytes: stored once.
        self.drift_page, self.gate = gate.page, replace(gate, page="")
        self.logger.info("Quality gate: %s", self.gate.describe())
        problem = gate_refusal(
            self.gate, self.rejected_rows, self.rows, self.max_invalid_fraction, self.fail_on_drift
        )
        refuse(problem, self.staging)
        self.start_memory_mib = peak_memory_mib()
        self.next(self.score_chunk, foreach="chunks")

    def stage_input(self):
        """`start`'s reading of the input: resolve the version, stage the chunks, take the
        training reference. Sets `chunks` (one per task), the counts, the model's files
        and the reference; returns the gate's sample of the valid rows."""
        import tempfile

        from batch_scoring.model_files import download_scoring_model, resolve_scored_version
        from batch_scoring.quality_gate import training_reference
        from batch_scoring.reading import open_input
        from batch_scoring.splitting import stage_chunks

        self.model_name = self.settings.model.name
        self.scored_version = resolve_scored_version(self.model_name, self.model_version)
        with tempfile.TemporaryDirectory() as directory:
            source = open_input(self.input_location, self.schema, directory)
            self.file_format, self.input_columns = source.file_format, source.columns
            features, self.model_files = download_scoring_model(
                self.model_name, self.scored_version, directory
            )
            staged = stage_chunks(
                source, features, self.schema, staging=self.staging, chunk_rows=self.chunk_rows,
                sample_size=self.settings.monitoring.max_rows, directory=directory,
            )  # fmt: skip
        self.chunks, self.rejects_parts = staged.chunks, staged.rejects_parts
        self.rows, self.rejected_rows = staged.rows, staged.rejected_rows
        self.reject_reasons = staged.reject_reasons
        for warning in staged.refusal_warnings():
            self.logger.warning("%s", warning)
        self.reference, self.training_classes = training_reference(
            self.model_name, self.scored_version, self.schema,
            max_rows=self.settings.monitoring.max_rows, dataset=self.dataset,
            is_production=current.is_production, logger=self.logger,
        )  # fmt: skip
        self.logger.info(
            "%d rows in %d chunk(s) for %s version %s; %d refused.",
            self.rows, len(self.chunks), self.model_name, self.scored_version, self.rejected_rows,
        )  # fmt: skip
        return staged.sample

    @backend
    @environment(vars=environment_variables)
    @step
    def score_chunk(self):
        """Score one chunk as the server would; stage the output rows; capture them."""
        import time

        from batch_scoring.chunk_scoring import capture_slices, score_staged_chunk
        from batch_scoring.memory import peak_memory_mib

        self.chunk = self.input
        started = time.time()
        self.scored_rows, self.class_counts, self.scored_part = 0, {}, None
        self.unanswered_part, self.unanswered_rows = None, 0
        if self.chunk["rows"]:
            # The ids come from the run and the chunk: a retried chunk's captures
            # replace its failed attempt's, never adding to them.
            run = (f"{current.flow_name}/{current.run_id}", int(self.started_at * 1000))
            scored = score_staged_chunk(
                self.chunk, self.model_files, self.schema.features, self.staging,
                self.scored_version, run,
            )  # fmt: skip
            self.scored_part, self.scored_rows = scored.scored_part, len(scored.answered)
            self.unanswered_part = scored.unanswered_part
            self.unanswered_rows, self.class_counts = scored.unanswered_rows, scored.class_counts
            if not self.no_capture:
                for features, outputs in capture_slices(scored):
                    self.backend_impl.save(features, outputs, source="batch")
        self.chunk_seconds = time.time() - started
        self.chunk_memory_mib = peak_memory_mib()
        self.logger.info(
            "Chunk %d: %d rows scored in %.1f s (peak memory %.0f MiB).",
            self.chunk["index"], self.scored_rows, self.chunk_seconds, self.chunk_memory_mib,
        )  # fmt: skip
        self.next(self.assemble)

    @card
    @step
    def assemble(self, inputs):
        """Assemble the output and the rejects file from the chunks and move them into
        place in one step each; report rows, refusals, classes, throughput and the gate."""

        from batch_scoring.errors import refuse
        from batch_scoring.locations import rejects_location, remove_staging
        from batch_scoring.output import publish_output
        from batch_scoring.quality_gate import invalid_fraction_error
        from batch_scoring.rows import OUT_OF_RANGE
        from batch_scoring.scoring_card import merged_counts, scoring_card

        self.merge_artifacts(inputs, exclude=CHUNK_ARTIFACTS)
        chunks = sorted(inputs, key=lambda task: task.chunk["index"])
        self.scored_rows = sum(task.scored_rows for task in chunks)
        self.unanswered_rows = sum(task.unanswered_rows for task in chunks)
        self.class_counts = merged_counts(task.class_counts for task in chunks)
        refused = self.rejected_rows + self.unanswered_rows
        refuse(invalid_fraction_error(refused, self.rows, self.max_invalid_fraction), self.staging)
        self.rejects_location = rejects_location(self.output_location)
        written = publish_output(
            [task.scored_part for task in chunks if task.scored_part],
            self.rejects_parts + [task.unanswered_part for task in chunks if task.unanswered_part],
            input_columns=self.input_columns, schema=self.schema,
            output_location=self.output_location, rejects_location=self.rejects_location,
            run_id=current.run_id,
        )  # fmt: skip
        self.logger.info(
            "Wrote %d rows to %s; %d refused rows to %s.",
            written, self.output_location, refused, self.rejects_location,
        )  # fmt: skip
        remove_staging(self.staging)
        self.record_throughput(chunks)
        if self.unanswered_rows:
            self.reject_reasons[("", OUT_OF_RANGE)] = self.unanswered_rows
        current.card.extend(
            scoring_card(
                self.scored_rows, self.rows, self.reject_reasons, self.class_counts,
                self.training_classes, self.seconds, self.gate.describe(),
                self.gate.drift_detected, self.output_location,
            )
        )  # fmt: skip
        self.next(self.end)

    def record_throughput(self, chunks) -> None:
        """Wall time, rows a second, each chunk's time and each task kind's peak memory."""
        import time

        from batch_scoring.memory import peak_memory_mib

        self.seconds = time.time() - self.started_at
        self.rows_per_second = self.scored_rows / self.seconds if self.seconds else 0.0
        self.chunk_seconds = [task.chunk_seconds for task in chunks]
        self.memory_mib = {
            "start": self.start_memory_mib,
            "score_chunk": max(task.chunk_memory_mib for task in chunks),
            "assemble": peak_memory_mib(),
        }

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
