"""Auto-promotion where monitoring runs remotely, through real Metaflow runs.

The monitoring pipeline runs on captures with a better shadow (support/monitoring.py's
`capture_with_shadow`) and `promotion.auto: true`, in an environment that says where
the task runs as Metaflow sets it in remote tasks:
- "argo": ARGO_WORKFLOW_TEMPLATE, with `promotion.event` set and Metaflow's Argo Events
  webhook pointing at a real HTTP server on 127.0.0.1: the run must publish the event
  with the shadow's version and run no deployment;
- "batch": AWS_BATCH_JOB_ID (a `--with batch` task): it must refuse, saying how to
  promote, publish nothing and run no deployment.
The deployment pipeline itself, as a `--with batch` task with the Local backend, must
fail at `start` before anything changes: its server would run on the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support import monitoring as mf
from support.flows import FlowRequest, FlowResult
from support.paths import DEPLOYMENT_FLOW, MONITORING_FLOW
from support.places import Place
from support.state import ensure_experiment, session_directory
from support.webhook import Webhook, serving_webhook

pytestmark = pytest.mark.e2e

MODEL_NAME = "monitoring-promotion-tests"
EVENT = "promote"
ON_ARGO = {"ARGO_WORKFLOW_TEMPLATE": "penguins.prod.monitoring"}
ON_BATCH = {"AWS_BATCH_JOB_ID": "4a1b7f0e-batch-job"}


@dataclass
class PromotionRuns:
    webhook: Webhook
    results: dict[str, FlowResult]

    def successful(self, name: str) -> FlowResult:
        result = self.results[name]
        assert result.successful, result.describe()
        return result


@pytest.fixture(scope="module")
def runs(flows_runner: Callable[[dict[str, FlowRequest]], dict[str, FlowResult]]) -> Iterator[Any]:
    import yaml

    ensure_experiment(mf.MONITORING_EXPERIMENT)
    model = mf.register_model(MODEL_NAME)
    place = Place(session_directory() / "monitoring-promotion-tests", model_name=MODEL_NAME)
    place.write_config()
    mf.capture_with_shadow(place, mf.penguins(), mf.project_schema(), model.version)
    config = yaml.safe_load(place.config.read_text())
    config["promotion"] = {"auto": True, "event": EVENT}
    place.config.write_text(yaml.safe_dump(config, sort_keys=False))
    with serving_webhook() as webhook:
        # Metaflow's ArgoEvent posts to ARGO_EVENTS_WEBHOOK_URL from its configuration.
        hook = {"METAFLOW_ARGO_EVENTS_WEBHOOK_URL": webhook.url}
        requests = {
            "argo": FlowRequest(MONITORING_FLOW, config=place.config, env={**ON_ARGO, **hook}),
            "batch": FlowRequest(MONITORING_FLOW, config=place.config, env={**ON_BATCH, **hook}),
            "deployment on batch": FlowRequest(
                DEPLOYMENT_FLOW, {"model_version": model.version}, config=place.config, env=ON_BATCH
            ),
        }
        yield PromotionRuns(webhook, flows_runner(requests))


def test_on_argo_monitoring_publishes_the_promotion_event_instead_of_deploying(
    runs: PromotionRuns,
) -> None:
    result = runs.successful("argo")
    promotion = result.run["end"].task.data.promotion
    assert promotion["route"] == "publish" and promotion["version"] == mf.SHADOW_VERSION
    [body] = runs.webhook.bodies  # the batch run published nothing
    assert body["payload"]["id"] == promotion["event_id"]
    assert body["payload"]["model_version"] == mf.SHADOW_VERSION
    assert body["payload"]["monitoring_run"] == f"Monitoring/{result.run.id}"
    # Scoped to the run's @project branch, as the deployment's trigger is.
    assert body["name"].startswith("mfns.penguins.") and body["name"].endswith(f".{EVENT}")
    assert "command" not in promotion  # no deployment pipeline ran
    assert "The deployment pipeline deployed version" not in result.output
    assert "did not deploy" not in result.output


def test_on_batch_monitoring_refuses_to_promote_saying_how(runs: PromotionRuns) -> None:
    result = runs.successful("batch")
    promotion = result.run["end"].task.data.promotion
    assert promotion["route"] == "refuse"
    assert f"--model-version {mf.SHADOW_VERSION}" in promotion["reason"]
    assert f"not promoting version {mf.SHADOW_VERSION} from aws-batch" in result.output
    assert all(body["payload"]["monitoring_run"] != f"Monitoring/{result.run.id}"
               for body in runs.webhook.bodies)  # fmt: skip
    assert "did not deploy" not in result.output


def test_the_deployment_pipeline_never_deploys_a_local_server_on_a_worker(
    runs: PromotionRuns,
) -> None:
    result = runs.results["deployment on batch"]
    assert result.status == "failed", result.describe()
    assert "This deployment runs on aws-batch" in result.output
    assert "Local backend would start its model server on that worker" in result.output
    assert result.run is not None and "deploy" not in [step.id for step in result.run]
