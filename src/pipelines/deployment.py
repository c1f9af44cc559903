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

With `promotion.event` set in the config, a deployment on Argo Workflows
(`argo-workflows create`) also runs when monitoring publishes that event, on the
version its payload names (promotion/promotion_event.py). A remote task never deploys
the Local backend, whose server would run on the worker: it fails at `start`.
"""

import contextlib
from collections.abc import Iterator

from metaflow import Parameter, card, current, step

from common.pipeline import Pipeline, PipelineError, backend, dataset
from promotion.promotion_event import promote_on_event


@contextlib.contextmanager
def failing_the_run_on_refusal() -> Iterator[None]:
    """A request promotion cannot go on with fails the run with its message, no traceback."""
    from promotion.errors import PromotionError

    try:
        yield
    except PromotionError as error:
        raise PipelineError(str(error)) from None


@promote_on_event
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

        from common.registry import CHAMPION, alias_version
        from promotion.gate import decide_promotion
        from promotion.rollout import prepare

        self.refuse_to_deploy_on_a_worker()
        client = mlflow.MlflowClient()
        self.model_name = self.settings.model.name
        self.champion = alias_version(client, self.model_name, CHAMPION)
        with failing_the_run_on_refusal():
            self.choose_versions(client)
            self.decision = decide_promotion(
                client, self.backend_impl, self.promotion_request(), self.settings.promotion
            )
            self.logger.info("Decision: %s.", self.decision.reason)
            if self.decision.refused:
                self.record(self.decision, {self.version: "challenger", self.champion: "champion"})
            elif self.changes_serving():
                # Here, where MLflow is imported already, and while the old version serves.
                prepare(self.backend_impl, self.release())
        self.smoke_rows, self.classes = self.smoke_test_rows()
        self.show_decision()
        self.next(self.deploy)

    @backend
    @step
    def deploy(self):
        """Stop a refused run; else deploy and smoke test, rolling back on failure."""
        from promotion.decision import refusal_message
        from promotion.rollout import RolloutFailed, roll_out

        if self.decision.refused:
            raise PipelineError(refusal_message(self.decision))
        if not self.changes_serving():
            self.deployed = False
            self.logger.info("Version %s is already serving: nothing to do.", self.version)
        else:
            try:
                times = roll_out(
                    self.backend_impl, self.release(), self.serving_release(),
                    self.smoke_rows, self.classes,
                )  # fmt: skip
            except RolloutFailed as failure:
                self.record_rollback(str(failure))
                raise PipelineError(str(failure)) from None
            self.deployed = True
            # bench/deployment.py reads this line: keep its wording.
            self.logger.info(
                "Version %s serves after %.1f s; its smoke test took %.2f s and passed.",
                self.version,
                times.start,
                times.smoke_test,
            )
        self.next(self.promote)

    @step
    def promote(self):
        """Record the deployment in the registry: aliases, tags and the audit trail."""
        import mlflow

        from common.registry import promote, retire_challenger
        from promotion.audit import promotion_roles
        from promotion.decision import shadowing

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
            roles = promotion_roles(self.decision.decision, self.version, self.previous)
            self.record(self.decision, roles)
        if self.deployed and self.shadow_version:
            shadow = shadowing(self.shadow_version, self.version)
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

    # --- what the steps read and write ---------------------------------------------------

    def refuse_to_deploy_on_a_worker(self) -> None:
        """Fail before anything changes when this task runs remotely and the backend
        would serve on this machine (promotion.promotion_event)."""
        from common.events import task_platform
        from promotion.promotion_event import deploying_here_error

        error = deploying_here_error(task_platform(), self.backend_impl.serves_where_deployed)
        if error is not None:
            raise PipelineError(error)

    @property
    def target(self) -> str:
        return str(self.project.backend.get("target", self.backend))

    def now(self):
        from datetime import UTC, datetime

        return datetime.now(UTC)

    def choose_versions(self, client) -> None:
        """The versions to serve and to shadow (checked), and what serves now."""
        from common.registry import model_uri
        from promotion.requested_versions import (
            requested_to_serve,
            resolve_requested,
            resolve_shadow,
        )

        name = self.model_name
        requested = requested_to_serve(self.model_version, self.shadow, self.champion, name)
        self.version = resolve_requested(client, name, requested, "--model-version")
        self.model_uri = model_uri(name, self.version)
        self.shadow_version = resolve_shadow(client, name, self.shadow, self.version)
        self.serving_version = self.backend_impl.deployed_version()
        self.serving_shadow = self.backend_impl.deployed_shadow_version()
        self.logger.info(
            "Deploying %s%s (serving now: %s; champion: %s).",
            self.model_uri,
            f" with version {self.shadow_version} in shadow" if self.shadow_version else "",
            self.serving_version or "nothing",
            self.champion or "none",
        )

    def promotion_request(self):
        from promotion.gate import PromotionRequest

        return PromotionRequest(
            self.model_name, self.version, self.champion, self.model_version, self.force
        )

    def release(self):
        """What this run deploys."""
        from promotion.rollout import Release

        return Release(self.model_name, self.version, self.shadow_version)

    def serving_release(self):
        """What served when this run started."""
        from promotion.rollout import Release

        return Release(self.model_name, self.serving_version, self.serving_shadow)

    def changes_serving(self) -> bool:
        return self.release() != self.serving_release()

    def smoke_test_rows(self) -> tuple[list, list[str]]:
        """Dataset rows to send the new deployment, and the classes its answers may name."""
        from common.pipeline import development_seed
        from common.traffic import sample_requests

        schema = self.schema
        seed = development_seed(current.is_production)
        rows = sample_requests(self.data, schema, self.smoke_samples, False, seed=seed)
        return rows, sorted(str(c) for c in self.data[schema.target].unique())

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

    def record_rollback(self, failure: str) -> None:
        """Record an automatic rollback after a failed deployment (never masking its error)."""
        from promotion.decision import rolled_back

        try:
            decision = rolled_back(failure, self.decision)
            self.record(decision, {self.version: "failed", self.serving_version: "restored"})
        except Exception as error:  # The registry may be what failed: say so, fail as planned.
            self.logger.error("Could not record the rollback in the registry: %s", error)

    def show_decision(self) -> None:
        """The decision, its figures, the shadow if any and the history so far, on the
        `start` card."""
        import mlflow

        from promotion.audit import deployment_history
        from promotion.decision_card import history_card, shadow_section
        from promotion.evidence import cross_validated_scores

        client = mlflow.MlflowClient()
        history = deployment_history(client, self.model_name, limit=50)
        shadow = None
        if self.shadow_version:
            versions = (self.version, self.shadow_version)
            scores = {v: cross_validated_scores(client, self.model_name, v) for v in versions}
            shadow = shadow_section(
                self.shadow_version, self.version, scores, self.decision.refused
            )
        current.card.extend(history_card(self.decision, history, shadow))


if __name__ == "__main__":
    Deployment()
