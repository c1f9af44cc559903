"""Tests for common.events: where a task runs, and publishing an event.

Publishing goes to a real HTTP server on 127.0.0.1 standing in for the Argo Events
webhook (support/webhook.py); nothing is mocked.
"""

from __future__ import annotations

import pytest
from support.webhook import serving_webhook

from common.events import (
    ARGO_WORKFLOWS,
    AWS_BATCH,
    KUBERNETES,
    LOCAL,
    STEP_FUNCTIONS,
    publish_event,
    running_on_argo_workflows,
    task_platform,
)


def test_argo_workflows_is_recognised_by_metaflows_own_variable() -> None:
    assert running_on_argo_workflows({"ARGO_WORKFLOW_TEMPLATE": "penguins.prod.monitoring"})
    assert not running_on_argo_workflows({})
    assert not running_on_argo_workflows({"ARGO_WORKFLOW_TEMPLATE": ""})


# What Metaflow (argo_workflows.py, kubernetes.py, batch.py, step_functions.py) and AWS
# Batch set in the tasks they launch.
ARGO_TASK = {
    "ARGO_WORKFLOW_TEMPLATE": "penguins.prod.monitoring",
    "METAFLOW_KUBERNETES_WORKLOAD": "1",
    "METAFLOW_RUNTIME_ENVIRONMENT": "kubernetes",
    "METAFLOW_KUBERNETES_POD_NAME": "penguins-prod-monitoring-abc",
}
SFN_TASK = {
    "SFN_STATE_MACHINE": "penguins.prod.Monitoring",
    "AWS_BATCH_JOB_ID": "0e4f",
    "METAFLOW_RUNTIME_ENVIRONMENT": "aws-batch",
}


@pytest.mark.parametrize(
    ("environ", "platform"),
    [
        ({}, LOCAL),
        ({"METAFLOW_RUNTIME_ENVIRONMENT": "local", "USER": "dev"}, LOCAL),
        (ARGO_TASK, ARGO_WORKFLOWS),
        (SFN_TASK, STEP_FUNCTIONS),
        ({"AWS_BATCH_JOB_ID": "0e4f"}, AWS_BATCH),  # `run --with batch`
        ({"METAFLOW_RUNTIME_ENVIRONMENT": "aws-batch"}, AWS_BATCH),
        ({"METAFLOW_KUBERNETES_WORKLOAD": "1"}, KUBERNETES),  # `run --with kubernetes`
        ({"METAFLOW_RUNTIME_ENVIRONMENT": "kubernetes"}, KUBERNETES),
    ],
    ids=["nothing", "local", "argo", "step functions", "batch", "batch runtime", "k8s", "k8s rt"],
)
def test_the_task_platform_follows_what_metaflow_sets(
    environ: dict[str, str], platform: str
) -> None:
    assert task_platform(environ) == platform


def test_an_event_is_posted_to_the_webhook_with_its_payload() -> None:
    with serving_webhook() as hook:
        event_id = publish_event("promote", {"model_version": "7"}, hook.url)
    assert event_id
    [body] = hook.bodies
    assert body["name"] == "mfns.promote"  # outside a run: no @project branch
    assert body["payload"]["model_version"] == "7"
    assert body["payload"]["id"] == event_id


def test_a_refused_event_is_none_not_an_exception() -> None:
    with serving_webhook() as hook:
        hook.status = 500
        assert publish_event("promote", {"model_version": "7"}, hook.url) is None
    assert len(hook.bodies) == 1
