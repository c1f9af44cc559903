"""Traffic pipeline: send realistic requests to the deployed model, or label them.

    uv run src/pipelines/traffic.py run --mode traffic --samples 200 [--drift]
    uv run src/pipelines/traffic.py run --mode labels --ground-truth-quality 0.8

`traffic` sends dataset rows (target removed) in batches; `--drift` shifts the first
numeric feature by two standard deviations. `labels` simulates ground truth for every
captured prediction that has none: right with probability `--ground-truth-quality`.
"""

from metaflow import Parameter, current, step

from common.pipeline import Pipeline, PipelineError, backend, dataset

MODES = ("traffic", "labels")


class Traffic(Pipeline):
    """Generate traffic for the deployed model, or attach ground truth to captures."""

    mode = Parameter("mode", help=f"One of {MODES}.", default="traffic")
    samples = Parameter("samples", help="Rows to send in traffic mode.", default=200)
    batch_size = Parameter("batch-size", help="Rows per request.", default=10)
    drift = Parameter(
        "drift", help="Shift a feature to simulate drift.", is_flag=True, default=False
    )
    ground_truth_quality = Parameter(
        "ground-truth-quality",
        help="Probability that a simulated label equals the prediction (labels mode).",
        default=0.8,
    )

    @dataset
    @backend
    @step
    def start(self):
        """Send the traffic, or label the captured predictions."""
        self.validate_parameters()
        if self.mode == "traffic":
            self.send_traffic()
        else:
            self.labeled = self.backend_impl.label(self.ground_truth_quality)
            self.logger.info("Labelled %d predictions.", self.labeled)
        self.next(self.end)

    def validate_parameters(self):
        if self.mode not in MODES:
            raise PipelineError(f"--mode must be one of {MODES}, got {self.mode!r}.")
        if self.samples < 1 or self.batch_size < 1:
            raise PipelineError("--samples and --batch-size must be positive integers.")
        if not 0 <= self.ground_truth_quality <= 1:
            raise PipelineError("--ground-truth-quality must be between 0 and 1.")

    def send_traffic(self):
        from common.pipeline import development_seed
        from common.traffic import batches, sample_requests

        seed = development_seed(current.is_production)
        rows = sample_requests(self.data, self.schema, self.samples, self.drift, seed=seed)
        self.predictions = 0
        groups = batches(rows, self.batch_size)
        for number, group in enumerate(groups, start=1):
            response = self.backend_impl.invoke(group)
            self.predictions += len(response.get("predictions", []))
            if number % 10 == 0 or number == len(groups):
                self.logger.info(
                    "Sent %d of %d rows.", min(number * self.batch_size, len(rows)), len(rows)
                )
        self.logger.info(
            "%d predictions returned%s.", self.predictions, " (drifted)" if self.drift else ""
        )

    @step
    def end(self):
        """Done."""
        self.logger.info("The pipeline finished successfully.")


if __name__ == "__main__":
    Traffic()
