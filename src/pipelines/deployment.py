"""Deployment pipeline: serve a registered model, smoke test it, promote or roll back.

    uv run src/pipelines/deployment.py run                          # the newest version
    uv run src/pipelines/deployment.py run --model-version 3        # a version number
    uv run src/pipelines/deployment.py run --model-version previous # roll back

On success the deployed version gets the registry alias `champion` (the one it
replaces becomes `previous`) and tags saying when and where it was deployed. If the
new model does not come up or answers badly, the version that served before is put
back, the aliases stay as they were, and the run fails saying why.
"""

from metaflow import Parameter, current, step

from common.pipeline import Pipeline, PipelineError, backend, dataset


class Deployment(Pipeline):
    """Deploy a registered model version to the configured backend."""

    model_version = Parameter(
        "model-version",
        help="Version number or alias (e.g. champion, previous) to deploy; default: newest.",
        default="latest",
    )

    smoke_samples = Parameter(
        "smoke-samples",
        help="Rows from the dataset sent through the new deployment as a smoke test.",
        default=5,
    )

    @dataset
    @backend
    @step
    def start(self):
        """Decide what to deploy, note what serves now, pick smoke-test rows."""
        import mlflow

        from backends.base import BackendError
        from common.pipeline import development_seed
        from common.registry import CHAMPION, alias_version, resolve_version
        from common.traffic import sample_requests

        client = mlflow.MlflowClient()
        self.model_name = self.settings.model.name
        try:
            self.version = resolve_version(client, self.model_name, self.model_version)
        except LookupError as error:
            raise PipelineError(str(error)) from None
        self.model_uri = f"models:/{self.model_name}/{self.version}"
        self.serving_version = self.backend_impl.deployed_version()
        self.champion = alias_version(client, self.model_name, CHAMPION)
        self.logger.info(
            "Deploying %s (serving now: %s).", self.model_uri, self.serving_version or "nothing"
        )
        if self.serving_version != self.version:
            # Here, where MLflow is imported already, and while the old version serves.
            try:
                self.backend_impl.prepare(self.model_uri, self.version)
            except BackendError as error:
                raise PipelineError(f"{error}; nothing was changed.") from None

        schema = self.schema
        seed = development_seed(current.is_production)
        self.smoke_rows = sample_requests(self.data, schema, self.smoke_samples, False, seed=seed)
        self.classes = sorted(str(c) for c in self.data[schema.target].unique())
        self.next(self.deploy)

    @backend
    @step
    def deploy(self):
        """Deploy and smoke test; promote on success, roll back and fail otherwise."""
        import time

        from backends.base import BackendError
        from common.smoke import SmokeTestError, check_predictions

        if self.serving_version == self.version:
            self.deployed = False
            self.logger.info("Version %s is already serving: nothing to do.", self.version)
            self.next(self.promote)
            return

        stage = "start"
        started = time.perf_counter()
        try:
            self.backend_impl.deploy(self.model_uri, self.version)
            serving = time.perf_counter()
            stage = "smoke test"
            response = self.backend_impl.invoke(self.smoke_rows)
            check_predictions(response, len(self.smoke_rows), set(self.classes))
        except (BackendError, SmokeTestError) as error:
            self.rollback()
            raise PipelineError(
                f"Version {self.version} failed its {stage} and was rolled back to "
                f"{self.serving_version or 'no deployment'}: {error}"
            ) from None
        self.deployed = True
        # bench/deployment.py reads this line: keep its wording.
        self.logger.info(
            "Version %s serves after %.1f s; its smoke test took %.2f s and passed.",
            self.version,
            serving - started,
            time.perf_counter() - serving,
        )
        self.next(self.promote)

    def rollback(self):
        """Put back what served before this deployment (or nothing, if nothing did)."""
        self.logger.warning("Rolling back to %s.", self.serving_version or "no deployment")
        if self.serving_version is None:
            self.backend_impl.stop()
        else:
            uri = f"models:/{self.model_name}/{self.serving_version}"
            self.backend_impl.deploy(uri, self.serving_version)

    @step
    def promote(self):
        """Record the deployment in the registry: aliases and tags."""
        from datetime import UTC, datetime

        import mlflow

        from common.registry import promote

        if self.deployed or self.champion != self.version:
            self.previous = promote(
                mlflow.MlflowClient(),
                self.model_name,
                self.version,
                target=str(self.project.backend.get("target", self.backend)),
                when=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            self.logger.info("Version %s is now the champion.", self.version)
        self.next(self.end)

    @step
    def end(self):
        """Report the outcome."""
        self.logger.info(
            "Model %s version %s %s at %s.",
            self.model_name,
            self.version,
            "deployed" if self.deployed else "was already serving",
            self.project.backend.get("target", "the configured target"),
        )


if __name__ == "__main__":
    Deployment()
