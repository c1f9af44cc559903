"""Retraining on alert: monitoring publishes an event, training is triggered by it.

Both ends read the event name from the project configuration (`retraining.event`,
empty by default) and scope it to the deployment's @project branch with Metaflow's
`namespaced_event_name` (`mfns.<project>.<branch>.<event>`): the production monitoring
deployment triggers the production training deployment, never a colleague's branch.

Only Argo Workflows (with Argo Events) delivers events. Step Functions refuses to
deploy a flow with `@trigger`, which is why the trigger is opt-in, added by the
`retrain_on_alert` FlowMutator only when an event is configured. A monitoring run
anywhere else (locally, on Step Functions) publishes nothing and never fails for it.

Only Metaflow, the standard library, common.events and the settings are imported
here: every task imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from metaflow import FlowMutator, namespaced_event_name, trigger

from common.events import publish_event, running_on_argo_workflows
from common.settings import RetrainingSettings
from common.settings_loader import load_settings


def configured_event(project: Mapping[str, Any]) -> str | None:
    """The event name of `retraining.event`, or None when retraining on alert is off.

    `project` is the configuration mapping; only its `retraining` section is read (the
    parser has checked the rest).
    """
    return load_settings(RetrainingSettings, project.get("retraining"), "retraining").event


def retraining_decision(
    alerts: Sequence[str], event: str | None, on_argo: bool
) -> tuple[bool, str]:
    """Whether to publish the retraining event, and why (for the log)."""
    if not alerts:
        return False, "no alert: retraining is not requested"
    if event is None:
        return False, "retraining on alert is off (set `retraining.event` in the config)"
    if not on_argo:
        return False, (
            f"event {event!r} not published: events reach deployments on Argo Workflows only"
        )
    return True, f"alerts raised: publishing event {event!r} to retrain"


def retraining_payload(
    alerts: Sequence[str], model: str, version: str | None, monitoring_run: str
) -> dict[str, str]:
    """What the event tells the training deployment, as strings (Argo Events' payload).

    Metaflow maps payload fields named like a training parameter onto that parameter;
    none of these is one, so a retraining run uses the deployment's defaults.
    """
    return {
        "reason": "monitoring alert",
        "alerts": " ".join(alerts),
        "monitored_model": model,
        "monitored_version": "" if version is None else str(version),
        "monitoring_run": monitoring_run,
    }


def request_retraining(
    alerts: Sequence[str],
    project: Mapping[str, Any],
    model: str,
    version: str | None,
    monitoring_run: str,
    logger: logging.Logger,
    environ: Mapping[str, str] | None = None,
    url: str | None = None,
) -> str | None:
    """Publish the retraining event when alerts call for it; return the event's id.

    Every outcome is logged, so a run's log says why it did or did not ask for
    retraining.
    """
    event = configured_event(project)
    publish, reason = retraining_decision(alerts, event, running_on_argo_workflows(environ))
    logger.info("Retraining: %s.", reason)
    if not publish:
        return None
    event_id = publish_event(event, retraining_payload(alerts, model, version, monitoring_run), url)
    if event_id is None:
        logger.warning("Retraining event %r could not be published; see the log above.", event)
    else:
        logger.info("Published retraining event %r (id %s).", event, event_id)
    return event_id


class retrain_on_alert(FlowMutator):
    """Add `@trigger` on the configured retraining event, when there is one.

    Applied in `pre_mutate`, the only phase that may add flow decorators, once the
    configuration is known. Without an event the flow has no trigger and still
    deploys to Step Functions.
    """

    def pre_mutate(self, mutable_flow) -> None:
        project = dict(mutable_flow.configs).get("project")
        event = configured_event(project) if project is not None else None
        if event is not None:
            mutable_flow.add_decorator(trigger, deco_kwargs={"event": namespaced_event_name(event)})
