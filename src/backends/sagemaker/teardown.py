"""Deleting what the backend created for an endpoint: the billed parts.

Captured data and ground truth stay in S3: they are the monitoring history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from backends.aws import aws_errors, error_code, list_keys
from backends.sagemaker.connection import Connection
from backends.sagemaker.endpoint import ENDPOINT_TAG, describe_endpoint, tags
from backends.sagemaker.formats import join_key

logger = logging.getLogger(__name__)


def owned_resources(aws: Connection) -> tuple[list[str], list[str]]:
    """(models, endpoint configs) tagged as created for this endpoint."""
    found: dict[str, list[str]] = {"models": [], "configs": []}
    listings = (
        ("models", "list_models", "Models", "ModelName", "ModelArn"),
        ("configs", "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName",
         "EndpointConfigArn"),
    )  # fmt: skip
    for kind, operation, items, name_key, arn_key in listings:
        with aws_errors(f"Listing SageMaker {kind}"):
            pages = aws.sagemaker.get_paginator(operation).paginate(NameContains=aws.endpoint)
            candidates = [item for page in pages for item in page[items]]
        for item in candidates:
            if tags(aws, item[arn_key]).get(ENDPOINT_TAG) == aws.endpoint:
                found[kind].append(item[name_key])
    return found["models"], found["configs"]


def delete_resources(
    aws: Connection,
    models: Iterable[str] = (),
    configs: Iterable[str] = (),
    missing_ok: bool = False,
) -> None:
    """Delete endpoint configs, then models; with `missing_ok`, ones already gone are fine."""
    from botocore.exceptions import ClientError

    calls = [("delete_endpoint_config", "EndpointConfigName", name) for name in configs]
    calls += [("delete_model", "ModelName", name) for name in models]
    for operation, argument, name in calls:
        try:
            getattr(aws.sagemaker, operation)(**{argument: name})
            logger.info("Deleted %s.", name)
        except ClientError as error:
            if not (missing_ok and error_code(error) == "ValidationException"):
                with aws_errors(f"Deleting {name}"):
                    raise


def delete_endpoint(aws: Connection) -> None:
    """Delete the endpoint and wait until it is gone (its instances stop billing)."""
    with aws_errors(f"Deleting endpoint {aws.endpoint}"):
        aws.sagemaker.delete_endpoint(EndpointName=aws.endpoint)
        aws.sagemaker.get_waiter("endpoint_deleted").wait(
            EndpointName=aws.endpoint, WaiterConfig={"Delay": 10, "MaxAttempts": 60}
        )
    logger.info("Deleted endpoint %s.", aws.endpoint)


def delete_everything(aws: Connection) -> None:
    """Delete the endpoint, its configs, models and model archives."""
    if describe_endpoint(aws) is not None:
        delete_endpoint(aws)
    models, configs = owned_resources(aws)
    delete_resources(aws, models, configs, missing_ok=True)
    bucket, prefix = aws.settings.artifacts_location
    for key in list_keys(aws.s3, bucket, join_key(prefix, aws.endpoint) + "/"):
        with aws_errors(f"Deleting s3://{bucket}/{key}"):
            aws.s3.delete_object(Bucket=bucket, Key=key)
