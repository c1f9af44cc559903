"""Monitoring pipeline: is the deployed model, and the data it sees, still healthy?

    uv run src/pipelines/monitoring.py run [--samples 500] [--fail-on-alert]
    uv run src/pipelines/monitoring.py card view start --id data_drift

    start (reports: data_summary, data_drift, classification) ─ end (alerts, history)

The reference is the data the deployed model version was trained on (recorded with
the model by the training pipeline); the current data is the newest `--samples`
captured predictions of that version that have ground truth (rows another version
answered, and smoke tests, are left out). Each report is an HTML card of `start`,
named by its card id; its conclusions are artifacts and MLflow metrics (experiment
`monitoring`), so their history can be followed. Drift or low accuracy raise an
alert; with `--fail-on-alert` the run then fails, for schedulers.

Before any label arrives, the accuracy is estimated from the confidences of the
version's newest `--samples` answers, labelled or not, through the calibration stored
with the version at registration, answers to inputs outside the training support
counted as guesses (`model_monitoring.performance_estimate`):
`estimated_accuracy` and its band are artifacts and MLflow metrics, an estimate under
the threshold is an alert, and the history shows the estimates beside the accuracy
realised once labels came. The card says which rows each figure used (`rows_used`).

Why two steps: every task is a new process, and importing Evidently costs seconds
(MLflow a few more) while the three reports together take a second or two. So the
reports run where their data is loaded, each library imported once per run, and each
card is rendered from its page there; a process forked at the start of `start`
imports the part of Evidently the reports use while the step loads the data, then
runs the reports two at a time (model_monitoring.report_worker.ReportWorker). `end` shows
the verdict and the history.

When the labelled captures include a shadow model's answers (deployment.py run
--shadow ...), `start` also compares the two on those same rows: accuracy of each,
the difference and McNemar's p-value, confusion matrices side by side on the `end`
card, the figures in MLflow (and `shadow_comparison.json` in the run). When the
promotion rule (`promotion:` settings) holds it records a "challenger is better"
finding (`challenger_finding`), apart from the alerts; with `promotion.auto: true` the
`end` step then runs the deployment pipeline on the shadow version, with this run's
configuration, and waits for it (`promotion` holds its outcome). On Argo Workflows it
publishes `promotion.event` for the deployed deployment pipeline instead, and on other
remote workers it refuses, saying how to promote: a worker never deploys (see
model_monitoring/auto_promotion.py).

Deployed to a production scheduler (`argo-workflows create`, `step-functions create`)
it runs on `monitoring.schedule` from the config (hourly by default). On Argo
Workflows, an alert publishes the `retraining.event` the training deployment listens
to, when one is configured (see common/retraining.py).
"""

from typing import Any

from metaflow import Parameter, card, config_expr, current, schedule, step

from common.pipeline import Pipeline, PipelineError, backend, dataset

# Each report's card id on `start`, and the artifact holding the page it shows.
CARDS = {"summary": "data_summary", "drift": "data_drift", "classification": "classification"}
PAGES = {"summary": "summary_page", "drift": "drift_page", "classification": "classification_page"}
# Larger artifacts (the pages, megabytes each) are not listed on the end card.
MAX_LISTED_ARTIFACT_BYTES = 1_000_000


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

    @card(type="html", id=CARDS["summary"], options={"attribute": PAGES["summary"]})
    @card(type="html", id=CARDS["drift"], options={"attribute": PAGES["drift"]})
    @card(type="html", id=CARDS["classification"], options={"attribute": PAGES["classification"]})
    @dataset
    @backend
    @step
    def start(self):
        """Compare the production data with the training data; record the figures.

        Three Evidently reports, each its own HTML card: data summary (column statistics,
        data-quality tests), data drift (per column, against the training data) and
        classification quality (the deployed model on the labelled rows); and the
        accuracy estimated from the confidences of the version's recent answers.
        """
        from model_monitoring.end_card import import_plotting
        from model_monitoring.report_worker import ReportWorker

        if self.samples < 1:
            raise PipelineError(f"--samples must be a positive integer, got {self.samples}.")
        settings = self.settings.monitoring
        self.model_name = self.settings.model.name
        # Evidently is imported by the worker while this process loads the data, and
        # the history chart's Matplotlib here while the worker runs the reports.
        with ReportWorker() as worker:
            comparison, recent = self.load_data(settings.max_rows)
            worker.submit(self.reference, self.current, self.schema, settings)
            self.estimate = self.estimate_accuracy(recent)
            import_plotting()
            reports = worker.result()

        from model_monitoring.end_card import history_chart
        from model_monitoring.history import estimates_beside_accuracy, monitoring_history

        self.record_conclusions(reports, comparison)
        self.record_in_mlflow(settings.experiment)
        self.history = monitoring_history(settings.experiment, self.model_name)
        self.history_chart = history_chart(self.history, settings)
        self.estimate_history = estimates_beside_accuracy(self.history)
        for message in self.alerts:
            self.logger.warning("ALERT: %s", message)
        self.next(self.end)

    def load_data(self, max_rows: int) -> tuple[Any, Any]:
        """Set the monitored version, the reference and the current (production) data;
        return the champion-shadow comparison on the labelled rows (None without) and
        the version's newest rows, labelled or not, for the estimate (None without).

        The reference is the training data of the monitored version (the dataset file
        for a model without it); the current data the newest labelled predictions that
        version made.
        """
        from common.registry import CHAMPION
        from model_monitoring.monitored_model import monitored_version, training_reference
        from model_monitoring.production_rows import describe_rows, version_windows
        from model_monitoring.reports import production_frame, sample_rows
        from model_monitoring.shadow_comparison import shadow_comparison

        schema = self.schema
        requested = self.model_version or self.backend_impl.deployed_version() or CHAMPION
        self.monitored_version = monitored_version(self.model_name, requested)
        reference = training_reference(self.model_name, self.monitored_version)
        if reference is None:
            self.logger.warning("No training data recorded with the model: using %s.", self.dataset)
            reference = self.data
        self.reference = sample_rows(reference[schema.features], max_rows)
        windows = version_windows(self.backend_impl, self.samples, self.monitored_version)
        captured = windows.labelled
        # On every labelled row loaded, not the sample the reports get: it is cheap.
        comparison = shadow_comparison(captured)
        self.current = None if captured is None else production_frame(captured, schema)
        self.current = sample_rows(self.current, max_rows)
        self.rows = 0 if self.current is None else len(self.current)
        self.rows_used = {
            "labelled": describe_rows(captured, self.monitored_version),
            "recent": describe_rows(windows.recent, self.monitored_version),
        }
        self.logger.info(
            "Monitoring %s version %s on %d labelled production rows that version answered.",
            self.model_name, self.monitored_version, self.rows,
        )  # fmt: skip
        return comparison, windows.recent

    def estimate_accuracy(self, recent: Any) -> dict[str, Any] | None:
        """The accuracy of the version's recent answers, estimated from their
        confidences through its stored calibration, and their inputs against its stored
        input support (None without answers)."""
        from model_monitoring.performance_estimate import estimate_version

        if recent is None:
            return None
        estimate = estimate_version(self.model_name, self.monitored_version, recent)
        if estimate is None:
            return None
        self.logger.info("Estimated accuracy before labels: %s.", estimate.summary())
        return estimate.as_dict()

    def record_conclusions(self, reports: dict, comparison: Any) -> None:
        """Keep the report pages and what they concluded, the alerts, the challenger
        finding and the run's figures as artifacts."""
        from model_monitoring.alerts import alerts, figures
        from model_monitoring.performance_estimate import Estimate
        from model_monitoring.reports import conclusions
        from model_monitoring.shadow_comparison import challenger_finding, shadow_figures

        for name, artifact in PAGES.items():
            setattr(self, artifact, reports[name].html)
        for name, value in conclusions(reports).items():
            setattr(self, name, value)
        self.alerts = alerts(
            self.drift_detected,
            self.drifted_columns,
            self.accuracy,
            self.settings.monitoring.accuracy_threshold,
            self.estimate,
        )
        self.challenger_finding = challenger_finding(comparison, self.settings.promotion)
        # Plain data, not the dataclass: readable from any client.
        self.shadow_comparison = None if comparison is None else comparison.as_dict()
        self.metrics = figures(
            self.rows, self.tests, self.drift_detected, self.drifted_columns, self.accuracy
        )
        self.metrics.update(shadow_figures(comparison, self.challenger_finding))
        if self.estimate is not None:
            self.metrics.update(Estimate(**self.estimate).figures())

    def record_in_mlflow(self, experiment: str) -> None:
        """Record the run's figures in MLflow, with the shadow comparison when there is one."""
        from model_monitoring.history import log_monitoring, log_shadow_comparison, monitoring_tags

        metaflow_run = f"{current.flow_name}/{current.run_id}"
        tags = monitoring_tags(self.alerts, self.challenger_finding, metaflow_run)
        self.mlflow_monitoring_run_id = log_monitoring(
            experiment, self.model_name, self.monitored_version, self.metrics, tags
        )
        if self.shadow_comparison is not None:
            log_shadow_comparison(
                self.mlflow_monitoring_run_id, self.shadow_comparison, self.challenger_finding
            )
            self.logger.info("Shadow: %s.", self.challenger_finding["summary"])

    # The default card lists the task's artifacts; the pages are start's cards already.
    @card(options={"max_artifact_size": MAX_LISTED_ARTIFACT_BYTES})
    @step
    def end(self):
        """Show the alerts and the history of the figures; fail on alert if asked."""
        from common.retraining import request_retraining
        from model_monitoring.end_card import (
            estimate_history,
            estimate_section,
            monitoring_summary,
            shadow_section,
        )

        threshold = self.settings.monitoring.accuracy_threshold
        current.card.extend(
            monitoring_summary(self.alerts, self.metrics, self.history_chart, self.failed_tests)
        )
        current.card.extend(estimate_section(self.estimate, self.rows_used, threshold))
        current.card.extend(estimate_history(self.estimate_history))
        current.card.extend(shadow_section(self.shadow_comparison, self.challenger_finding))
        # Before failing on alert: a scheduled run that fails must still ask for retraining.
        self.retraining_event_id = request_retraining(
            self.alerts,
            self.project,
            self.model_name,
            self.monitored_version,
            f"{current.flow_name}/{current.run_id}",
            self.logger,
        )
        self.promotion = self.promote_if_better()
        if not self.alerts:
            accuracy = "unknown" if self.accuracy is None else f"{self.accuracy:.3f}"
            self.logger.info("No alerts: %d rows, accuracy %s.", self.rows, accuracy)
            if self.failed_tests:
                names = ", ".join(test["name"] for test in self.failed_tests)
                self.logger.info("Evidently tests failed without raising an alert: %s.", names)
        elif self.fail_on_alert:
            raise PipelineError("Monitoring raised alerts: " + " ".join(self.alerts))

    def promote_if_better(self) -> dict | None:
        """Ask for a better shadow's promotion when `promotion.auto` is on: run the
        deployment pipeline here, publish the promotion event on Argo Workflows, or
        refuse on other remote workers (model_monitoring.auto_promotion)."""
        from common.events import task_platform
        from model_monitoring.auto_promotion import (
            PUBLISH,
            REFUSE,
            promotion_decision,
            promotion_route,
            publish_promotion,
        )
        from promotion.promotion_event import configured_event

        promote, reason = promotion_decision(self.challenger_finding, self.settings.promotion.auto)
        self.logger.info("Promotion: %s.", reason)
        if not promote:
            return None
        version = self.challenger_finding["shadow_version"]
        event = configured_event(self.project)
        route, why = promotion_route(task_platform(), event, version)
        if route == REFUSE:
            self.logger.warning("Promotion: %s.", why)
            return {"route": REFUSE, "reason": why, "version": str(version)}
        self.logger.info("Promotion: %s.", why)
        if route == PUBLISH:
            outcome = publish_promotion(event, version, f"{current.flow_name}/{current.run_id}")
            if outcome["event_id"] is None:
                self.logger.warning("Promotion event %r could not be published.", event)
            return outcome
        return self.run_deployment_here(version)

    def run_deployment_here(self, version: str) -> dict:
        """Run the deployment pipeline on `version` in this machine; log its outcome."""
        from pathlib import Path

        from model_monitoring.auto_promotion import run_deployment

        outcome = run_deployment(
            str(Path(__file__).with_name("deployment.py")),
            self.project.to_dict(),
            version,
            {
                "backend": self.backend,
                "dataset": self.dataset,
                "mlflow-tracking-uri": self.mlflow_tracking_uri,
            },
        )
        if outcome["returncode"] == 0:
            self.logger.info("The deployment pipeline deployed version %s.", version)
        else:
            self.logger.warning(
                "The deployment pipeline did not deploy version %s (exit %s):\n%s",
                version, outcome["returncode"], outcome["output"][-2000:],
            )  # fmt: skip
        return outcome


if __name__ == "__main__":
    Monitoring()
