"""Asking the deployment pipeline to promote a better shadow, when `promotion.auto` is on.

Monitoring only asks: `run_deployment` runs the deployment pipeline on the shadow's
version, with the monitoring run's configuration, and reports what happened. That
pipeline decides for itself (it compares the versions again and may refuse), and
its failure does not fail the monitoring run, whose figures stand.
"""

from __future__ import annotations

from typing import Any


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
        return {"command": command, "returncode": None, "output": redact(str(error))}
    output = redact(f"{process.stdout}\n{process.stderr}".strip())
    return {"command": command, "returncode": process.returncode, "output": output[-4000:]}


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
        return {"command": None, "returncode": None, "output": str(error)}
    with tempfile.TemporaryDirectory() as directory:
        config_file = Path(directory) / "project.yml"
        config_file.write_text(yaml.safe_dump(configuration))
        command = promotion_command(deployment_flow, str(config_file), version, parameters)
        return run_promotion(command, environment=environment)
