"""What an endpoint is and serves: read-only SageMaker calls.

Every resource the backend creates is tagged `endpoint=<name>` and
`model_version=<version>`: the version serving (and the one in shadow) is read from the
tags of the model behind the endpoint config's production (shadow) variant.
"""

from __future__ import annotations

import re
from typing import Any

from backends.aws import aws_errors, error_code
from backends.sagemaker.connection import Connection

VERSION_TAG = "model_version"
ENDPOINT_TAG = "endpoint"
# How SageMaker says that a resource does not exist (a ValidationException).
_MISSING = re.compile(r"could not find|not found|does not exist", re.IGNORECASE)


def describe_endpoint(aws: Connection) -> dict[str, Any] | None:
    """The endpoint's description, or None when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        return aws.sagemaker.describe_endpoint(EndpointName=aws.endpoint)
    except ClientError as error:
        if error_code(error) == "ValidationException" and _MISSING.search(str(error)):
            return None
        with aws_errors(f"Describing endpoint {aws.endpoint}"):
            raise


def describe_config(aws: Connection, config_name: str) -> dict[str, Any]:
    with aws_errors(f"Describing endpoint config {config_name}"):
        return aws.sagemaker.describe_endpoint_config(EndpointConfigName=config_name)


def config_models(aws: Connection, config_name: str, kind: str = "all") -> list[str]:
    """The models behind an endpoint config's variants: `production`, `shadow` or `all`."""
    config = describe_config(aws, config_name)
    variants = []
    if kind in ("production", "all"):
        variants += config.get("ProductionVariants", [])
    if kind in ("shadow", "all"):
        variants += config.get("ShadowProductionVariants", [])
    return [variant["ModelName"] for variant in variants]


def model_version(aws: Connection, model_name: str) -> str | None:
    """The `model_version` tag of a SageMaker model."""
    with aws_errors(f"Describing model {model_name}"):
        arn = aws.sagemaker.describe_model(ModelName=model_name)["ModelArn"]
    return tags(aws, arn).get(VERSION_TAG)


def tags(aws: Connection, arn: str) -> dict[str, str]:
    with aws_errors(f"Reading the tags of {arn}"):
        found = aws.sagemaker.list_tags(ResourceArn=arn).get("Tags", [])
    return {tag["Key"]: tag["Value"] for tag in found}


def tag_list(endpoint: str, version: str) -> list[dict[str, str]]:
    """The tags of a model or endpoint config made for `version` at `endpoint`."""
    return [{"Key": ENDPOINT_TAG, "Value": endpoint}, {"Key": VERSION_TAG, "Value": version}]


def deployed_version(aws: Connection, kind: str = "production") -> str | None:
    """The `model_version` tag of the model behind the endpoint's production (or
    `shadow`) variant, if it is in service."""
    endpoint = describe_endpoint(aws)
    if endpoint is None or endpoint["EndpointStatus"] not in ("InService", "Updating"):
        return None
    for model_name in config_models(aws, endpoint["EndpointConfigName"], kind):
        version = model_version(aws, model_name)
        if version is not None:
            return version
    return None
