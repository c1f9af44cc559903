"""A pipeline written from the spec's "Pipeline Structure Template".

The structure (imports, `environment_variables`, a `@dataset @card` start that opens
an MLflow run, a middle step, `end`) is the template's. What the template leaves as
"Implementation" records what each step saw, so tests can assert on it:

- `start`: the parameters, the tracking URI MLflow uses, the backend settings.
- `next_step` (`@backend`): the class and settings of `self.backend_impl`, which must
  be an instance of the class `--backend` names (`backend.Local` by default).
- every step: that `self.logger` is a working logger, which decorators it runs with,
  and the tracking URI `@mlflow` put in its environment.
"""

import os
from pathlib import Path

from metaflow import (
    Parameter,
    card,
    current,
    environment,
    step,
)

from common.pipeline import Pipeline, backend, dataset

# Environment variables (if needed for Keras/TensorFlow)
environment_variables = {
    "KERAS_BACKEND": os.getenv("KERAS_BACKEND", "tensorflow"),
}

LOG_MARKER = "template-flow logger works in step"


class TemplatePipeline(Pipeline):
    """A pipeline built from the template, for the framework's end-to-end tests.

    This pipeline should:
    - Load the configured dataset and open an MLflow run.
    - Instantiate the configured backend without calling it (no AWS needed).
    - Record what every step saw as artifacts.
    """

    # Custom parameters
    my_param = Parameter(
        "my-param",
        help="Description of parameter.",
        default="default-value",
    )

    fail_first_attempt = Parameter(
        "fail-first-attempt",
        help="Make the first attempt of `next_step` fail, to see `--with retry` at work.",
        default=False,
    )

    def record_step(self):
        """Log through `self.logger` and remember what this step ran with."""
        import logging

        assert isinstance(self.logger, logging.Logger), type(self.logger)
        self.logger.info("%s %s", LOG_MARKER, current.step_name)
        loggers = dict(getattr(self, "loggers", {}))
        loggers[current.step_name] = self.logger.name
        self.loggers = loggers
        function = getattr(self, current.step_name)
        decorators = dict(getattr(self, "step_decorators", {}))
        decorators[current.step_name] = sorted(
            [deco.name for deco in function.decorators]
            + [deco.decorator_name for deco in function.wrappers or []]
        )
        self.step_decorators = decorators
        tracking = dict(getattr(self, "tracking_environment", {}))
        tracking[current.step_name] = os.environ.get("MLFLOW_TRACKING_URI")
        self.tracking_environment = tracking

    @dataset
    @card
    @step
    def start(self):
        """Start the pipeline."""
        import mlflow

        self.logger.info("MLflow tracking server: %s", self.mlflow_tracking_uri)
        self.mode = "production" if current.is_production else "development"

        run = mlflow.start_run(run_name=current.run_id)
        self.mlflow_run_id = run.info.run_id

        self.seen_parameters = {
            "backend": self.backend,
            "dataset": self.dataset,
            "mlflow_tracking_uri": self.mlflow_tracking_uri,
            "my_param": self.my_param,
        }
        self.seen_tracking_uri = mlflow.get_tracking_uri()
        self.seen_project = {
            "project": self.project.project,
            "backend": dict(self.project.backend),
            "dataset": dict(self.project.dataset),
            "model": dict(self.project.model),
        }
        self.dataset_exists = Path(self.dataset).is_file()
        self.record_step()
        self.next(self.next_step)

    @environment(vars=environment_variables)
    @backend
    @step
    def next_step(self):
        """Check the backend instance without calling anything that needs a service."""
        if self.fail_first_attempt and current.retry_count == 0:
            raise RuntimeError("First attempt fails on purpose (--fail-first-attempt).")
        from backends.base import Backend
        from common.pipeline import resolve_backend_class

        expected = resolve_backend_class(self.backend)
        assert isinstance(self.backend_impl, expected), (type(self.backend_impl), expected)
        assert isinstance(self.backend_impl, Backend), type(self.backend_impl)
        assert self.backend_impl.config == dict(self.project.backend), (
            self.backend_impl.config,
            self.project.backend,
        )
        backend_class = type(self.backend_impl)
        self.backend_class = f"{backend_class.__module__}.{backend_class.__qualname__}"
        self.backend_config = dict(self.backend_impl.config)
        self.keras_backend = os.environ.get("KERAS_BACKEND")
        self.record_step()
        self.next(self.end)

    @step
    def end(self):
        """End the pipeline."""
        self.record_step()
        self.logger.info("The pipeline finished successfully.")


if __name__ == "__main__":
    TemplatePipeline()
