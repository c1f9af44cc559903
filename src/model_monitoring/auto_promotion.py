"""Asking the deployment pipeline to promote a better shadow, when `promotion.auto` is on.

Monitoring only asks, and how depends on where it runs (`promotion_route`):
- on a developer's machine, `run_deployment` runs the deployment pipeline on the
  shadow's version, with the monitoring run's configuration, and reports what happened;
- on Argo Workflows, `publish_promotion` publishes `promotion.event` with the version,
  for the deployment pipeline deployed there with a @trigger on it
  (promotion.promotion_event): that deployment is the deploying job;
- anywhere else (Step Functions, `--with batch`, `--with kubernetes`) nothing listens
  to events and a worker must not deploy: it refuses, saying how to promote by hand.
The deployment pipeline decides for itself (it compares the versions again and may
refuse), and no outcome fails the monitoring run, whose figures stand.
"""

from __future__ import annotations

from typing import Any

from common.events import ARGO_WORKFLOWS, LOCAL

DEPLOY, PUBLISH, REFUSE = "deploy", "publish", "refuse"


def promotion_decision(finding: dict[str, Any] | None, auto: bool) -> tuple[bool, str]:
    """Whether to ask the deployment pipeline to promote the shadow, and why (for the log)."""
    if finding is None:
        return False, "no shadow answers among the labelled rows"
    if not finding["challenger_better"]:
        return False, f"shadow v{finding['shadow_version']} is not better: {finding['reason']}"
    if not auto:
        return False, (
            f"shadow v{finding['shadow_version']} is better; set `promotion.auto: true` to "
            "promote it from here, or run the deployment pipeline with --model-version "
            f"{finding['shadow_version']}"
        )
    return True, f"shadow v{finding['shadow_version']} is better: asking to promote it"


def promotion_route(platform: str, event: str | None, version: str) -> tuple[str, str]:
    """How to ask for `version`'s promotion from a task on `platform`
    (common.events.task_platform()): DEPLOY, PUBLISH or REFUSE, and why (for the log).

    `event` is `promotion.event` (None when unset).
    """
    by_hand = f"`uv run src/pipelines/deployment.py run --model-version {version}`"
    if platform == LOCAL:
        return DEPLOY, f"running the deployment pipeline on version {version} here"
    if platform == ARGO_WORKFLOWS and event is not None:
        return PUBLISH, (
            f"publishing event {event!r} for the deployment pipeline deployed on Argo "
            f"Workflows to deploy version {version}"
        )
    if platform == ARGO_WORKFLOWS:
        return REFUSE, (
            f"not promoting version {version} from Argo Workflows: set `promotion.event` and "
            "deploy the deployment pipeline there with the same config (`deployment.py "
            "--config project <config> --production argo-workflows create`), so that it "
            f"runs on the event; meanwhile promote by hand: {by_hand}"
        )
    return REFUSE, (
        f"not promoting version {version} from {platform}: no event reaches a deployment "
        "from here, and a worker must not deploy. Promote by hand from the machine that "
        f"deploys: {by_hand}; or run monitoring on Argo Workflows with `promotion.event` set"
    )


def publish_promotion(
    event: str, version: str, monitoring_run: str, url: str | None = None
) -> dict[str, Any]:
    """Publish the promotion event for `version`; what happened, as data."""
    from common.events import publish_event
    from promotion.promotion_event import promotion_payload

    payload = promotion_payload(version, monitoring_run, "monitoring found the shadow better")
    event_id = publish_event(event, payload, url)
    return {"route": PUBLISH, "event": event, "event_id": event_id, "version": str(version)}


def promotion_command(
    deployment_flow: str,
    config_file: str,
    version: str,
    parameters: dict[str, str],
    python: str | None = None,
) -> list[str]:
    """The command that runs the deployment pipeline on `version`, with this run's
    configuration file and the shared parameters (`--backend`, `--dataset`, ...)."""
    import sys

    command = [python or sys.executable, deployment_flow, "--config", "project", config_file]
    command += ["run", "--model-version", str(version)]
    for name, value in parameters.items():
        if value not in (None, ""):
            command += [f"--{name}", str(value)]
    return command


def run_promotion(
    command: list[str], timeout: float = 900.0, environment: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `command` (from `promotion_command`) to its end, in `environment` (this
    process's by default); what happened, as data, credentials redacted.

    The deployment pipeline decides for itself: it compares the versions again and
    may refuse. Its failure does not fail the monitoring run, whose figures stand.
    """
    import subprocess

    from common.secrets import redact

    try:
        process = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, env=environment
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return {
            "route": DEPLOY,
            "command": command,
            "returncode": None,
            "output": redact(str(error)),
        }
    output = redact(f"{process.stdout}\n{process.stderr}".strip())
    return {
        "route": DEPLOY,
        "command": command,
        "returncode": process.returncode,
        "output": output[-4000:],
    }


def run_deployment(
    deployment_flow: str, configuration: dict[str, Any], version: str, parameters: dict[str, str]
) -> dict[str, Any]:
    """Run the deployment pipeline `deployment_flow` on `version` with `configuration`
    (the monitoring run's, as parsed: placeholders expanded), written to a temporary
    file for it; what happened, as `run_promotion` says.

    Credentials in a URI (the tracking URI's `user:password@`) reach the pipeline
    through its environment, never its command line (which `ps` shows) or the file.
    """
    import os
    import tempfile
    from pathlib import Path

    import yaml

    from common.secrets import CredentialsError, credentials_to_environment

    environment = dict(os.environ)
    try:
        parameters = {
            name: credentials_to_environment(str(value), environment) if value else value
            for name, value in parameters.items()
        }
        uri = configuration.get("mlflow_tracking_uri")
        if uri:
            uri = credentials_to_environment(str(uri), environment)
            configuration = {**configuration, "mlflow_tracking_uri": uri}
    except CredentialsError as error:
        return {"route": DEPLOY, "command": None, "returncode": None, "output": str(error)}
    with tempfile.TemporaryDirectory() as directory:
        config_file = Path(directory) / "project.yml"
        config_file.write_text(yaml.safe_dump(configuration))
        command = promotion_command(deployment_flow, str(config_file), version, parameters)
        return run_promotion(command, environment=environment)
