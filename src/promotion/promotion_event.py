"""Promotion by event, and where the deployment pipeline may deploy.

Monitoring with `promotion.auto: true` asks for a better shadow to be promoted. Where
it runs on a developer's machine it runs the deployment pipeline there; on Argo
Workflows it publishes `promotion.event` with the version, and the deployment
pipeline, deployed on Argo with a @trigger on that event (`promote_on_event`), runs
with `--model-version` set from the payload. That deployment is the deploying job:
the SageMaker backend deploys from wherever it runs, through AWS's API. The Local
backend serves on the machine that runs `deploy`, so no remote task may deploy it
(`deploying_here_error`): its server would live and die with a worker.

Only Metaflow, the standard library and common are imported here: every deployment
task imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metaflow import FlowMutator, namespaced_event_name, trigger

from common.events import LOCAL
from common.settings import PromotionSettings
from common.settings_loader import load_settings

# The payload field that carries the version; Argo Events' payload keys take letters,
# digits and `_` only, so it is mapped onto the `model-version` parameter by name.
VERSION_FIELD = "model_version"
VERSION_PARAMETER = "model-version"


def configured_event(project: Mapping[str, Any]) -> str | None:
    """The event name of `promotion.event`, or None when promotion by event is off."""
    return load_settings(PromotionSettings, project.get("promotion"), "promotion").event


def promotion_payload(version: str, monitoring_run: str, reason: str) -> dict[str, str]:
    """What the event tells the deployment pipeline, as strings (Argo Events' payload).

    Only VERSION_FIELD is mapped onto a parameter; the rest is for whoever reads the
    event's history.
    """
    return {VERSION_FIELD: str(version), "monitoring_run": monitoring_run, "reason": reason}


def deploying_here_error(platform: str, serves_on_this_machine: bool) -> str | None:
    """Why the deployment pipeline must not deploy from here, or None when it may.

    `platform` is common.events.task_platform(); `serves_on_this_machine` says whether
    the backend starts its model server where `deploy` runs (the Local backend).
    """
    if platform == LOCAL or not serves_on_this_machine:
        return None
    return (
        f"This deployment runs on {platform}: the Local backend would start its model "
        "server on that worker, which stops with the task. Run the deployment pipeline on "
        "the machine that serves (`uv run src/pipelines/deployment.py run --model-version "
        "N`), or deploy to a backend that serves elsewhere (backend.Sagemaker)."
    )


class promote_on_event(FlowMutator):
    """Add `@trigger` on the configured promotion event, when there is one.

    The trigger maps the payload's VERSION_FIELD onto `--model-version`. Applied in
    `pre_mutate`, the only phase that may add flow decorators. Without an event the
    flow has no trigger and still deploys to Step Functions.
    """

    def pre_mutate(self, mutable_flow) -> None:
        project = dict(mutable_flow.configs).get("project")
        event = configured_event(project) if project is not None else None
        if event is not None:
            name = namespaced_event_name(event)
            deco_kwargs = {
                "event": {"name": name, "parameters": {VERSION_PARAMETER: VERSION_FIELD}}
            }
            mutable_flow.add_decorator(trigger, deco_kwargs=deco_kwargs)
