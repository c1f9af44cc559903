"""Where a task runs, and publishing the events that start deployed flows.

Monitoring asks other flows for work (retraining, promotion) by events, but only Argo
Workflows (with Argo Events) delivers them: Step Functions and bare AWS Batch or
Kubernetes tasks have no event bus a deployed flow listens to. So what a task may ask
for depends on where it runs, which Metaflow tells through the variables it sets in
every task it launches (`task_platform`).

Only Metaflow and the standard library are imported here: every task imports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

LOCAL = "local"
ARGO_WORKFLOWS = "argo-workflows"
STEP_FUNCTIONS = "step-functions"
AWS_BATCH = "aws-batch"
KUBERNETES = "kubernetes"


def running_on_argo_workflows(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this task runs in an Argo Workflows deployment.

    Metaflow sets ARGO_WORKFLOW_TEMPLATE in every task it compiles for Argo; its own
    `ArgoEvent.safe_publish` uses the same signal.
    """
    environ = os.environ if environ is None else environ
    return bool(environ.get("ARGO_WORKFLOW_TEMPLATE"))


def task_platform(environ: Mapping[str, str] | None = None) -> str:
    """Where this task runs: LOCAL, ARGO_WORKFLOWS, STEP_FUNCTIONS, AWS_BATCH or KUBERNETES.

    From what Metaflow (and AWS Batch) set in the task's environment: Argo first (its
    tasks are Kubernetes pods too), then Step Functions (its tasks are Batch jobs).
    """
    environ = os.environ if environ is None else environ
    runtime = environ.get("METAFLOW_RUNTIME_ENVIRONMENT", "")
    if running_on_argo_workflows(environ):
        return ARGO_WORKFLOWS
    if environ.get("SFN_STATE_MACHINE"):
        return STEP_FUNCTIONS
    if environ.get("AWS_BATCH_JOB_ID") or runtime == AWS_BATCH:
        return AWS_BATCH
    if environ.get("METAFLOW_KUBERNETES_WORKLOAD") or runtime == KUBERNETES:
        return KUBERNETES
    return LOCAL


def publish_event(event: str, payload: Mapping[str, str], url: str | None = None) -> str | None:
    """Publish `event`, scoped to this run's @project branch; return its id, or None
    when it failed.

    The name is Metaflow's `namespaced_event_name(event)` (`mfns.<project>.<branch>.`):
    a deployment on the same branch listens to it, never a colleague's. It goes to
    Metaflow's ARGO_EVENTS_WEBHOOK_URL unless `url` is given. A lost event must not
    fail the run that publishes it, whose figures are recorded: the caller logs None.
    """
    from metaflow import namespaced_event_name
    from metaflow.integrations import ArgoEvent
    from metaflow.plugins.argo.argo_events import ArgoEventException

    arguments = {} if url is None else {"url": url}
    try:
        return ArgoEvent(namespaced_event_name(event), **arguments).publish(
            payload=dict(payload), force=True, ignore_errors=False
        )
    except ArgoEventException:
        return None
