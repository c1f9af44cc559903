"""Monitoring pipeline: is the deployed model, and the data it sees, still healthy?

    uv run src/pipelines/monitoring.py run [--samples 500] [--fail-on-alert]

    start ┬ data_summary_report ──┐
          ├ data_drift_report ────┼ record ─ end
          └ classification_report ┘

The reference is the data the deployed model version was trained on (recorded with
the model by the training pipeline); the current data is the newest `--samples`
captured predictions that have ground truth. Each report is an HTML card; its
conclusions are artifacts and MLflow metrics (experiment `monitoring`), so their
history can be followed. Drift or low accuracy raise an alert; with
`--fail-on-alert` the run then fails, for schedulers.

Deployed to a production scheduler (`argo-workflows create`, `step-functions create`)
it runs on `monitoring.schedule` from the config (hourly by default). On Argo
Workflows, an alert publishes the `retraining.event` the training deployment listens
to, when one is configured (see common/retraining.py).
"""

from metaflow import Parameter, card, config_expr, current, schedule, step

from common.pipeline import Pipeline, PipelineError, backend, dataset


@schedule(cron=config_expr("project.monitoring.schedule"))
class Monitoring(Pipeline):
    """Evidently reports on production data, with history and alerts."""

    samples = Parameter(
        "samples", help="How many of the newest labelled predictions to examine.", default=500
    )
    model_version = Parameter(
        "model-version",
        help="Registry version or alias to monitor; default: what serves now, else champion.",
        default="",
    )
    fail_on_alert = Parameter(
        "fail-on-alert", help="Fail the run when an alert is raised.", is_flag=True, default=False
    )

    @dataset
    @backend
    @step
    def start(self):
        """Gather the reference (training data) and the current (production) data."""
        import mlflow

        from common.monitoring import production_frame, sample_rows
        from common.registry import CHAMPION, resolve_version
        from common.tracking import training_data

        if self.samples < 1:
            raise PipelineError(f"--samples must be a positive integer, got {self.samples}.")
        schema = self.schema
        settings = self.settings.monitoring
        self.model_name = self.settings.model.name
        requested = self.model_version or self.backend_impl.deployed_version() or CHAMPION
        try:
            self.monitored_version = resolve_version(
                mlflow.MlflowClient(), self.model_name, requested
            )
        except LookupError:
            self.monitored_version = None

        reference = None
        if self.monitored_version is not None:
            reference = training_data(self.model_name, self.monitored_version)
        if reference is None:
            self.logger.warning("No training data recorded with the model: using %s.", self.dataset)
            reference = self.data
        self.reference = sample_rows(reference[schema.features], settings.max_rows)

        captured = self.backend_impl.load(limit=self.samples, labeled_only=True)
        self.current = None if captured is None else production_frame(captured, schema)
        self.current = sample_rows(self.current, settings.max_rows)
        self.rows = 0 if self.current is None else len(self.current)
        self.logger.info(
            "Monitoring %s version %s on %d labelled production rows.",
            self.model_name, self.monitored_version, self.rows,
        )  # fmt: skip
        self.next(self.data_summary_report, self.data_drift_report, self.classification_report)

    @card(type="html")
    @step
    def data_summary_report(self):
        """Column statistics and data-quality tests of the production inputs."""
        from common.monitoring import summary_report

        self.summary_tests = self.report(
            "Data summary", lambda schema: summary_report(self.reference, self.current, schema)
        ).get("tests", [])
        self.next(self.record)

    @card(type="html")
    @step
    def data_drift_report(self):
        """Per-column and dataset drift of production inputs against the training data."""
        from common.monitoring import drift_report

        outcome = self.report(
            "Data drift",
            lambda schema: drift_report(
                self.reference, self.current, schema, self.settings.monitoring
            ),
        )
        self.drift_tests = outcome.get("tests", [])
        self.drift_detected = outcome.get("drift_detected", False)
        self.drifted_columns = outcome.get("drifted_columns", [])
        self.next(self.record)

    @card(type="html")
    @step
    def classification_report(self):
        """Quality of the deployed model on labelled production data."""
        from common.monitoring import classification_report

        outcome = self.report(
            "Classification quality",
            lambda schema: classification_report(self.current, schema),
        )
        self.classification_tests = outcome.get("tests", [])
        self.accuracy = outcome.get("accuracy")
        self.next(self.record)

    def report(self, title, build):
        """Run one Evidently report into this step's HTML card; return its outcome."""

        if self.rows == 0:
            self.html = (
                f"<html><body><h1>{title}</h1><p>No production data with ground truth yet: "
                "send traffic, attach labels, then run the monitoring pipeline again.</p>"
                "</body></html>"
            )
            return {}
        snapshot, outcome = build(self.schema)
        self.html = snapshot.get_html_str(as_iframe=False)
        return {"tests": outcome.tests, **outcome.values}

    @step
    def record(self, inputs):
        """Gather the reports' conclusions, raise alerts, record the figures in MLflow."""
        from common.monitoring import alerts
        from common.tracking import log_monitoring, monitoring_history

        # Evidently may touch the frames it reads; they are not needed past the reports.
        self.merge_artifacts(inputs, exclude=["html", "reference", "current"])
        settings = self.settings.monitoring
        self.tests = self.summary_tests + self.drift_tests + self.classification_tests
        self.alerts = alerts(
            self.drift_detected, self.drifted_columns, self.accuracy, settings.accuracy_threshold
        )
        self.metrics = {
            "rows": float(self.rows),
            "drift_detected": float(self.drift_detected),
            "drifted_columns": float(len(self.drifted_columns)),
            "failed_tests": float(sum(t["status"] == "FAIL" for t in self.tests)),
        }
        if self.accuracy is not None:
            self.metrics["accuracy"] = self.accuracy
        tags = {
            "alert": str(bool(self.alerts)),
            "metaflow_run": f"{current.flow_name}/{current.run_id}",
        }
        self.mlflow_monitoring_run_id = log_monitoring(
            settings.experiment, self.model_name, self.monitored_version, self.metrics, tags
        )
        self.history = monitoring_history(settings.experiment, self.model_name)
        for message in self.alerts:
            self.logger.warning("ALERT: %s", message)
        self.next(self.end)

    @card
    @step
    def end(self):
        """Show the alerts and the history of the figures; fail on alert if asked."""
        from common.cards import monitoring_summary
        from common.retraining import request_retraining

        current.card.extend(
            monitoring_summary(self.alerts, self.metrics, self.history, self.settings.monitoring)
        )
        # Before failing on alert: a scheduled run that fails must still ask for retraining.
        self.retraining_event_id = request_retraining(
            self.alerts,
            self.project,
            self.model_name,
            self.monitored_version,
            f"{current.flow_name}/{current.run_id}",
            self.logger,
        )
        if not self.alerts:
            self.logger.info("No alerts: %d rows, accuracy %s.", self.rows, self.accuracy)
        elif self.fail_on_alert:
            raise PipelineError("Monitoring raised alerts: " + " ".join(self.alerts))


if __name__ == "__main__":
    Monitoring()
