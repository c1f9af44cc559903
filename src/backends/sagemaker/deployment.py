"""Deploying a model version to the endpoint: archive, model, endpoint config, endpoint.

A first deployment creates the endpoint; a later one is a blue/green update to a new
endpoint config, after which the config and model it replaced are deleted. Resources
are named after the endpoint, the version and the time (`resource_name`) and tagged
with both; the variant is `version-<N>`, so captures say which version answered.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
import tempfile
import time
from typing import Any

from backends.aws import aws_errors, error_code
from backends.base import BackendError
from backends.sagemaker.connection import Connection
from backends.sagemaker.endpoint import (
    ENDPOINT_TAG,
    config_models,
    deployed_version,
    describe_endpoint,
    tag_list,
)
from backends.sagemaker.formats import CONTENT_TYPE, VARIANT_PREFIX, join_key
from backends.sagemaker.teardown import delete_endpoint, delete_resources

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_REPOSITORY = "mlflow-pyfunc"


def resource_name(endpoint: str, version: str, stamp: str) -> str:
    """A SageMaker model or endpoint-config name: endpoint, version and time, <= 63 chars."""
    suffix = f"-v{version}-{stamp}"
    return endpoint[: 63 - len(suffix)].rstrip("-") + suffix


def time_stamp() -> str:
    """UTC time to the second: what tells apart the resources of successive deployments."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime())


def deploy(aws: Connection, model_uri: str, model_version: str) -> bool:
    """Serve `model_uri` at the endpoint, capturing every request and response.

    Does nothing (returns False) when the endpoint already serves this version.
    """
    version = str(model_version)
    endpoint = describe_endpoint(aws)
    if endpoint is not None and deployed_version(aws) == version:
        logger.info("Endpoint %s already serves version %s: nothing to do.", aws.endpoint, version)
        return False
    if endpoint is not None and endpoint["EndpointStatus"] not in ("InService", "Failed"):
        raise BackendError(
            f"Endpoint {aws.endpoint} is {endpoint['EndpointStatus']}: wait until it is "
            "InService (or Failed) and deploy again."
        )
    replaced_config = endpoint["EndpointConfigName"] if endpoint is not None else None
    if endpoint is not None and endpoint["EndpointStatus"] == "Failed":
        # SageMaker cannot update a failed endpoint: it is replaced.
        logger.warning("Endpoint %s has failed: replacing it.", aws.endpoint)
        delete_endpoint(aws)
        endpoint = None

    name = resource_name(aws.endpoint, version, time_stamp())
    model_data = upload_model(aws, model_uri, version)
    create_model(aws, name, version, model_data)
    try:
        create_endpoint_config(aws, name, version)
        if endpoint is None:
            create_endpoint(aws, name)
        else:
            update_endpoint(aws, name)
    except BackendError:
        delete_resources(aws, models=[name], configs=[name], missing_ok=True)
        raise
    if replaced_config is not None:
        delete_resources(
            aws,
            models=config_models(aws, replaced_config),
            configs=[replaced_config],
            missing_ok=True,
        )
    logger.info("Endpoint %s serves version %s.", aws.endpoint, version)
    return True


def upload_model(aws: Connection, model_uri: str, version: str) -> str:
    """Package the MLflow model as SageMaker wants it (model.tar.gz) and upload it."""
    import mlflow

    bucket, prefix = aws.settings.artifacts_location
    key = join_key(prefix, aws.endpoint, version, "model.tar.gz")
    with tempfile.TemporaryDirectory() as directory:
        local = mlflow.artifacts.download_artifacts(model_uri, dst_path=directory)
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            for name in sorted(os.listdir(local)):
                tar.add(os.path.join(local, name), arcname=name)
    with aws_errors(f"Uploading the model to s3://{bucket}/{key}"):
        aws.s3.put_object(Bucket=bucket, Key=key, Body=archive.getvalue())
    return f"s3://{bucket}/{key}"


def execution_role(aws: Connection) -> str:
    """The role SageMaker runs the model as: configured, assumed, or the caller's own."""
    role = aws.settings.execution_role or aws.settings.assume_role
    if role:
        return role
    with aws_errors("Finding the caller's IAM identity"):
        arn = aws.client("sts").get_caller_identity()["Arn"]
    match = re.match(r"arn:aws:sts::(\d+):assumed-role/([^/]+)/", arn)
    if match:
        return f"arn:aws:iam::{match.group(1)}:role/{match.group(2)}"
    raise BackendError(
        f"SageMaker needs an IAM role to run the model, and the caller {arn} is not a "
        "role. Set `backend.execution_role` (or `backend.assume_role`) in the config."
    )


def image(aws: Connection) -> str:
    """The serving image: configured, or MLflow's `mlflow-pyfunc` in this account's ECR."""
    import mlflow

    configured = aws.settings.image or os.environ.get("MLFLOW_SAGEMAKER_DEPLOY_IMG_URL")
    if configured:
        return configured
    from botocore.exceptions import ClientError

    try:
        repository = aws.client("ecr").describe_repositories(
            repositoryNames=[DEFAULT_IMAGE_REPOSITORY]
        )["repositories"][0]
    except ClientError as error:
        if error_code(error) != "RepositoryNotFoundException":
            with aws_errors("Looking up the serving image in ECR"):
                raise
        raise BackendError(
            f"No serving image: ECR has no `{DEFAULT_IMAGE_REPOSITORY}` repository in "
            f"{aws.settings.region}. Push MLflow's with `uv run mlflow sagemaker "
            "build-and-push-container` (needs Docker), or set `backend.image`."
        ) from None
    return f"{repository['repositoryUri']}:{mlflow.__version__}"


def create_model(aws: Connection, name: str, version: str, model_data: str) -> None:
    container = {
        "Image": image(aws),
        "ModelDataUrl": model_data,
        "Environment": {
            "MLFLOW_DEPLOYMENT_FLAVOR_NAME": "python_function",
            "SERVING_MODEL_VERSION": version,
        },
    }
    with aws_errors(f"Creating SageMaker model {name}"):
        aws.sagemaker.create_model(
            ModelName=name,
            PrimaryContainer=container,
            ExecutionRoleArn=execution_role(aws),
            Tags=tag_list(aws.endpoint, version),
        )


def data_capture_config(aws: Connection) -> dict[str, Any]:
    """Capture every request and response, as JSON, under `data_capture_uri`."""
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": aws.settings.data_capture_uri,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": [CONTENT_TYPE]},
    }


def create_endpoint_config(aws: Connection, name: str, version: str) -> None:
    with aws_errors(f"Creating endpoint config {name}"):
        aws.sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": f"{VARIANT_PREFIX}{version}",
                    "ModelName": name,
                    "InitialInstanceCount": aws.settings.instance_count,
                    "InstanceType": aws.settings.instance_type,
                    "InitialVariantWeight": 1.0,
                }
            ],
            DataCaptureConfig=data_capture_config(aws),
            Tags=tag_list(aws.endpoint, version),
        )


def create_endpoint(aws: Connection, config_name: str) -> None:
    with aws_errors(f"Creating endpoint {aws.endpoint}"):
        aws.sagemaker.create_endpoint(
            EndpointName=aws.endpoint,
            EndpointConfigName=config_name,
            Tags=[{"Key": ENDPOINT_TAG, "Value": aws.endpoint}],
        )
    wait_in_service(aws)


def update_endpoint(aws: Connection, config_name: str) -> None:
    """Blue/green: the new fleet comes up beside the old, then takes all the traffic.

    When the new fleet fails, SageMaker keeps the old one and the endpoint returns to
    InService on the old config: only the config in service tells success apart.
    """
    with aws_errors(f"Updating endpoint {aws.endpoint}"):
        aws.sagemaker.update_endpoint(
            EndpointName=aws.endpoint,
            EndpointConfigName=config_name,
            DeploymentConfig={
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "ALL_AT_ONCE",
                        "WaitIntervalInSeconds": 0,
                    },
                    "TerminationWaitInSeconds": 0,
                    # SageMaker accepts 600 s to 8 h.
                    "MaximumExecutionTimeoutInSeconds": min(
                        max(aws.settings.wait_seconds, 600), 28800
                    ),
                }
            },
        )
    wait_in_service(aws)
    endpoint = describe_endpoint(aws) or {}
    if endpoint.get("EndpointConfigName") != config_name:
        raise BackendError(
            f"Updating endpoint {aws.endpoint} failed and SageMaker kept the previous "
            f"version serving: {endpoint.get('FailureReason', 'no reason given')}. Its "
            f"CloudWatch logs are under /aws/sagemaker/Endpoints/{aws.endpoint}."
        )


def wait_in_service(aws: Connection) -> None:
    """Wait until the endpoint is InService; say why when it fails."""
    from botocore.exceptions import WaiterError

    delay = 15
    try:
        aws.sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=aws.endpoint,
            WaiterConfig={
                "Delay": delay,
                "MaxAttempts": max(1, aws.settings.wait_seconds // delay),
            },
        )
    except WaiterError:
        endpoint = describe_endpoint(aws) or {}
        raise BackendError(
            f"Endpoint {aws.endpoint} did not come into service "
            f"(status {endpoint.get('EndpointStatus', 'missing')}): "
            f"{endpoint.get('FailureReason', 'no reason given')}. Its CloudWatch logs "
            f"are under /aws/sagemaker/Endpoints/{aws.endpoint}."
        ) from None
