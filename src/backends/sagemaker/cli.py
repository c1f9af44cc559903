"""The cost guard: show, or delete with everything made for it, a config's endpoint.

uv run python -m backends.sagemaker status --config config/sagemaker.yml
uv run python -m backends.sagemaker delete --config config/sagemaker.yml
"""

from __future__ import annotations

import logging

from backends.base import BackendError
from backends.sagemaker.backend import Sagemaker


def main(argv: list[str] | None = None) -> int:
    """`status` or `delete` the endpoint named by a project config."""
    import argparse

    from common.config import load_project_configuration
    from common.settings import ConfigurationError

    parser = argparse.ArgumentParser(
        prog="python -m backends.sagemaker",
        description="Show, or delete with everything created for it, the SageMaker endpoint.",
    )
    parser.add_argument("command", choices=["status", "delete"])
    parser.add_argument("--config", default="config/sagemaker.yml", help="project config file")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        backend = Sagemaker(load_project_configuration(arguments.config)["backend"])
        if arguments.command == "delete":
            backend.stop()
            print(f"Deleted endpoint {backend.endpoint} and the models and configs made for it.")
            return 0
        endpoint = backend.describe_endpoint()
        if endpoint is None:
            print(f"Endpoint {backend.endpoint} does not exist (nothing is billed for it).")
            return 1
        shadow = backend.deployed_shadow_version()
        print(
            f"Endpoint {backend.endpoint}: {endpoint['EndpointStatus']}, model version "
            f"{backend.deployed_version()}"
            + (f" (version {shadow} in shadow)" if shadow else "")
            + f", {backend.instance_count} x {backend.instance_type}."
        )
        return 0
    except (BackendError, ConfigurationError, OSError) as error:
        print(f"error: {error}")
        return 2
