"""Deployment pipeline: promote a registered version on evidence, serve it, smoke test it.

    uv run src/pipelines/deployment.py run                          # the newest version
    uv run src/pipelines/deployment.py run --model-version 3        # a version number
    uv run src/pipelines/deployment.py run --model-version previous # roll back
    uv run src/pipelines/deployment.py run --force                  # deploy whatever it scores
    uv run src/pipelines/deployment.py run --shadow challenger      # champion serves, v scores

A version that is not the champion is compared with it first, in `start`, before
anything that serves changes: both score the newest labelled production captures (at
least `promotion.min_rows`) in this process, and the challenger must win by the
promotion rule (`promotion:` settings); with fewer labelled captures their
cross-validated scores are compared instead. A refused version fails the run with the
figures, and nothing serving changes. With no champion yet, a rollback to `previous`
or a redeployment of the champion, there is nothing to compare.

On success the deployed version gets the registry alias `champion` (the one it
replaces becomes `previous`) and tags saying when and where it was deployed. If the
new model does not come up or answers badly, the version that served before is put
back, the aliases stay as they were, and the run fails saying why. Every decision
(promoted, refused, forced, rollback, redeployed, shadow) is recorded as tags on the
versions involved; `promotion.audit.deployment_history` reads them back, and the
card of `start` shows this run's decision beside the model's history
(`uv run src/pipelines/deployment.py card view start`).
"""

from metaflow import Parameter, card, current, step

from common.pipeline import Pipeline, PipelineError, backend, dataset


class Deployment(Pipeline):
    """Deploy a registered model version to the configured backend."""

    model_version = Parameter(
        "model-version",
        help="Version number or alias (e.g. champion, previous) to deploy; default: the "
        "newest (the champion with --shadow).",
        default="latest",
    )

    smoke_samples = Parameter(
        "smoke-samples",
        help="Rows from the dataset sent through the new deployment as a smoke test.",
        default=5,
    )

    force = Parameter(
        "force",
        help="Deploy even if the comparison with the champion refuses it (recorded as forced).",
        is_flag=True,
        default=False,
    )

    shadow = Parameter(
        "shadow",
        help="Version or alias (e.g. challenger) that also scores every request, unseen, "
        "beside the served model; default: none.",
        default="",
    )

    @dataset
    @backend
    # Blank: what it shows is the decision and the history (`show_decision`); a default
    # card would also unpickle every artifact in its own process to list them (~0.6 s).
    @card(type="blank", id="decision")
    @step
    def start(self):
        """Decide what to deploy and whether the evidence allows it, while the old one serves."""
        import mlflow

        from backends.base import BackendError
        from common.pipeline import development_seed
        from common.registry import CHAMPION, alias_version
        from common.traffic import sample_requests

        client = mlflow.MlflowClient()
        self.model_name = self.settings.model.name
        self.champion = alias_version(client, self.model_name, CHAMPION)
        self.version = self.resolve(client, self.requested_version(), "--model-version")
        self.model_uri = f"models:/{self.model_name}/{self.version}"
        self.shadow_version = self.check_shadow(client)
        self.serving_version = self.backend_impl.deployed_version()
        self.serving_shadow = self.backend_impl.deployed_shadow_version()
        self.logger.info(
            "Deploying %s%s (serving now: %s; champion: %s).",
            self.model_uri,
            f" with version {self.shadow_version} in shadow" if self.shadow_version else "",
            self.serving_version or "nothing",
            self.champion or "none",
        )
        self.decision = self.judge(client)
        self.logger.info("Decision: %s.", self.decision.reason)
        if self.decision.refused:
            self.record(self.decision, {self.version: "challenger", self.champion: "champion"})
        elif self.changes_serving():
            # Here, where MLflow is imported already, and while the old version serves.
            try:
                self.backend_impl.prepare(self.model_uri, self.version, self.shadow_model())
            except BackendError as error:
                raise PipelineError(f"{error}; nothing was changed.") from None

        schema = self.schema
        seed = development_seed(current.is_production)
        self.smoke_rows = sample_requests(self.data, schema, self.smoke_samples, False, seed=seed)
        self.classes = sorted(str(c) for c in self.data[schema.target].unique())
        self.show_decision()
        self.next(self.deploy)

    @backend
    @step
    def deploy(self):
        """Stop a refused run; else deploy and smoke test, rolling back on failure."""
        import time

        from backends.base import BackendError
        from promotion.policy import refusal_message
        from promotion.smoke_test import SmokeTestError, check_predictions

        if self.decision.refused:
            raise PipelineError(refusal_message(self.decision))
        if not self.changes_serving():
            self.deployed = False
            self.logger.info("Version %s is already serving: nothing to do.", self.version)
            self.next(self.promote)
            return

        stage = "start"
        started = time.perf_counter()
        try:
            self.backend_impl.deploy(self.model_uri, self.version, shadow=self.shadow_model())
            serving = time.perf_counter()
            stage = "smoke test"
            response = self.backend_impl.invoke(self.smoke_rows)
            check_predictions(response, len(self.smoke_rows), set(self.classes))
        except (BackendError, SmokeTestError) as error:
            self.rollback()
            message = (
                f"Version {self.version} failed its {stage} and was rolled back to "
                f"{self.serving_version or 'no deployment'}: {error}"
            )
            self.record_rollback(message)
            raise PipelineError(message) from None
        self.deployed = True
        # bench/deployment.py reads this line: keep its wording.
        self.logger.info(
            "Version %s serves after %.1f s; its smoke test took %.2f s and passed.",
            self.version,
            serving - started,
            time.perf_counter() - serving,
        )
        self.next(self.promote)

    @step
    def promote(self):
        """Record the deployment in the registry: aliases, tags and the audit trail."""
        import mlflow

        from common.registry import promote, retire_challenger
        from promotion.policy import SHADOW, Decision

        self.previous = None
        client = mlflow.MlflowClient()
        if self.deployed or self.champion != self.version:
            self.previous = promote(
                client,
                self.model_name,
                self.version,
                target=self.target,
                when=self.now().isoformat(timespec="seconds"),
            )
            retire_challenger(client, self.model_name, self.version)
            self.logger.info("Version %s is now the champion.", self.version)
            replaced = {self.previous: "replaced"} if self.previous != self.version else {}
            role = {"rollback": "restored", "redeployed": "champion"}
            self.record(
                self.decision,
                {self.version: role.get(self.decision.decision, "challenger"), **replaced},
            )
        if self.deployed and self.shadow_version:
            shadow = Decision(
                SHADOW,
                f"version {self.shadow_version} scores every request in shadow beside "
                f"version {self.version}",
            )
            self.record(shadow, {self.shadow_version: "shadow", self.version: "served"})
        self.next(self.end)

    @step
    def end(self):
        """Report the outcome."""
        self.logger.info(
            "Model %s version %s %s at %s.",
            self.model_name,
            self.version,
            "deployed" if self.deployed else "was already serving",
            self.target,
        )

    # --- helpers of the steps ------------------------------------------------------------

    @property
    def target(self) -> str:
        return str(self.project.backend.get("target", self.backend))

    def now(self):
        from datetime import UTC, datetime

        return datetime.now(UTC)

    def requested_version(self) -> str:
        """What `--model-version` asks for; with only `--shadow`, the champion keeps serving."""
        from common.registry import CHAMPION

        if self.shadow and self.model_version in (None, "", "latest"):
            if self.champion is None:
                raise PipelineError(
                    f"--shadow {self.shadow}: no champion of model {self.model_name!r} serves "
                    "to shadow. Deploy one first, or name the version to serve with "
                    "--model-version."
                )
            return CHAMPION
        return self.model_version

    def resolve(self, client, requested: str, option: str) -> str:
        """The version `requested` names; a clear message listing what exists if none."""
        from common.registry import resolve_version
        from promotion.policy import available_versions

        try:
            return resolve_version(client, self.model_name, requested)
        except LookupError as error:
            raise PipelineError(
                f"{option} {requested}: {error} Registered versions of {self.model_name!r}: "
                f"{available_versions(client, self.model_name)}."
            ) from None

    def check_shadow(self, client) -> str | None:
        """The `--shadow` version, once it exists and takes the served model's inputs."""
        from mlflow.models import get_model_info

        from promotion.policy import input_columns, schema_differences

        if not self.shadow:
            return None
        version = self.resolve(client, self.shadow, "--shadow")
        if version == self.version:
            raise PipelineError(
                f"--shadow {self.shadow}: version {version} is the one being served; a model "
                "cannot shadow itself. Name another version (e.g. --shadow challenger)."
            )
        served = input_columns(get_model_info(self.model_uri).signature)
        shadow = input_columns(get_model_info(f"models:/{self.model_name}/{version}").signature)
        differences = schema_differences(served, shadow)
        if differences:
            raise PipelineError(
                f"--shadow {self.shadow}: version {version} does not take the inputs version "
                f"{self.version} takes: {'; '.join(differences)}. A shadow scores the served "
                "model's requests: shadow a version trained on the same features."
            )
        return version

    def shadow_model(self):
        from backends.base import ShadowModel

        if not self.shadow_version:
            return None
        uri = f"models:/{self.model_name}/{self.shadow_version}"
        return ShadowModel(uri, self.shadow_version)

    def changes_serving(self) -> bool:
        return (self.serving_version, self.serving_shadow) != (self.version, self.shadow_version)

    def judge(self, client):
        """Whether the version asked for may replace the champion (see promotion.policy)."""
        from common.registry import PREVIOUS
        from promotion.policy import forced, without_comparison

        decision = without_comparison(self.model_version, self.version, self.champion, PREVIOUS)
        if decision is not None:
            return decision
        try:
            decision = self.compare(client)
        except PipelineError as error:
            if not self.force:
                raise
            self.logger.warning("The comparison failed (%s); deploying anyway (--force).", error)
            from promotion.policy import Decision

            decision = Decision("refused", f"the comparison failed: {error}")
        return forced(decision, self.version) if self.force else decision

    def compare(self, client):
        """Challenger against champion: paired on labelled captures, else cross-validated."""
        import tempfile

        from mlflow.exceptions import MlflowException

        from backends.base import BackendError
        from promotion.policy import (
            EVIDENCE_ROWS,
            compare_on_captures,
            cross_validated_scores,
            judge_cross_validated,
            judge_paired,
            no_evidence,
        )

        settings = self.settings.promotion
        try:
            captures = self.backend_impl.load(
                limit=max(settings.min_rows, EVIDENCE_ROWS), labeled_only=True
            )
        except BackendError as error:
            raise PipelineError(f"Reading the labelled captures failed: {error}") from None
        rows = 0 if captures is None else len(captures)
        if rows >= settings.min_rows:
            from inference.scorer import load_scorer
            from promotion.policy import prepare_scoring

            prepare_scoring()

            champion_uri = f"models:/{self.model_name}/{self.champion}"
            try:
                with tempfile.TemporaryDirectory() as directory:
                    paired = compare_on_captures(
                        load_scorer, champion_uri, self.model_uri, captures, directory
                    )
            except (ValueError, OSError, MlflowException) as error:
                raise PipelineError(
                    f"Comparing version {self.version} with champion {self.champion} on "
                    f"{rows} labelled captures failed: {error}. Nothing serving was changed."
                ) from None
            self.logger.info(
                "Compared on %d labelled captures in %.2f s (%s).",
                rows,
                paired.seconds["total"],
                ", ".join(f"{k} {v:.2f} s" for k, v in paired.seconds.items() if k != "total"),
            )
            return judge_paired(paired.comparison, self.version, self.champion, settings)
        self.logger.warning(
            "Only %d labelled captures (promotion.min_rows is %d): comparing cross-validated "
            "scores instead.",
            rows,
            settings.min_rows,
        )
        pair = (self.version, self.champion)
        scores = {v: cross_validated_scores(client, self.model_name, v) for v in pair}
        missing = [version for version, score in scores.items() if score is None]
        if missing:
            return no_evidence(missing, self.version, self.champion, rows, settings.min_rows)
        return judge_cross_validated(
            scores[self.version], scores[self.champion], self.version, self.champion, rows,
            settings,
        )  # fmt: skip

    def record(self, decision, roles: dict) -> None:
        """Write `decision` to the audit trail of every version in `roles`."""
        import mlflow

        from promotion.audit import DeploymentEvent, record_event

        when = self.now()
        event = DeploymentEvent(
            decision=decision.decision,
            reason=decision.reason,
            version=self.version,
            when=when.isoformat(timespec="seconds"),
            target=self.target,
            champion=self.champion,
            shadow=self.shadow_version,
            evidence=decision.evidence,
            figures=decision.figures,
            run=f"{current.flow_name}/{current.run_id}",
        )
        roles = {version: role for version, role in roles.items() if version}
        record_event(mlflow.MlflowClient(), self.model_name, event, roles, when)

    def record_rollback(self, message: str) -> None:
        """Record an automatic rollback after a failed deployment (never masking its error)."""
        from promotion.policy import ROLLBACK, Decision

        try:
            reason = f"{message} (it was deployed as {self.decision.reason})"
            decision = Decision(ROLLBACK, reason, self.decision.evidence, self.decision.figures)
            self.record(decision, {self.version: "failed", self.serving_version: "restored"})
        except Exception as error:  # The registry may be what failed: say so, fail as planned.
            self.logger.error("Could not record the rollback in the registry: %s", error)

    def show_decision(self) -> None:
        """The decision, its figures and the history so far, on the `start` card."""
        import mlflow

        from promotion.audit import deployment_history
        from promotion.policy import history_card

        history = deployment_history(mlflow.MlflowClient(), self.model_name, limit=50)
        current.card.extend(history_card(self.decision, history))

    def rollback(self):
        """Put back what served before this deployment (or nothing, if nothing did)."""
        from backends.base import ShadowModel

        self.logger.warning("Rolling back to %s.", self.serving_version or "no deployment")
        if self.serving_version is None:
            self.backend_impl.stop()
            return
        uri = f"models:/{self.model_name}/{self.serving_version}"
        shadow = None
        if self.serving_shadow:
            shadow_uri = f"models:/{self.model_name}/{self.serving_shadow}"
            shadow = ShadowModel(shadow_uri, self.serving_shadow)
        self.backend_impl.deploy(uri, self.serving_version, shadow=shadow)


if __name__ == "__main__":
    Deployment()
