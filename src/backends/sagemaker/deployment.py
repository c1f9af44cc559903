"""Deploying a model version to the endpoint: archive, model, endpoint config, endpoint.

A first deployment creates the endpoint; a later one is a blue/green update to a new
endpoint config, after which the config it replaced, and the models no longer used, are
deleted. Resources are named after the endpoint, the version and the time
(`resource_name`) and tagged with both; the production variant is `version-<N>` and a
shadow variant `shadow-<M>`, so captures say which version answered, and how.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from backends.aws import aws_errors, error_code
from backends.base import BackendError, ShadowModel
from backends.sagemaker.connection import Connection
from backends.sagemaker.endpoint import (
    ENDPOINT_TAG,
    describe_config,
    describe_endpoint,
    model_version,
    tag_list,
)
from backends.sagemaker.formats import CONTENT_TYPE, SERVED, SHADOW, join_key, variant_name
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


@dataclass(frozen=True)
class Variant:
    """One variant of an endpoint config: its name, role, model and the model's version."""

    name: str
    role: str  # `production` or `shadow`
    model: str
    version: str | None


def config_variants(aws: Connection, config_name: str) -> list[Variant]:
    """The production and shadow variants of an endpoint config, with their versions."""
    config = describe_config(aws, config_name)
    return [
        Variant(variant["VariantName"], role, variant["ModelName"],
                model_version(aws, variant["ModelName"]))
        for role, key in (("production", "ProductionVariants"),
                          ("shadow", "ShadowProductionVariants"))
        for variant in config.get(key, [])
    ]  # fmt: skip


def role_version(variants: list[Variant], role: str) -> str | None:
    """The model version of the variant in `role`, if there is one."""
    return next((variant.version for variant in variants if variant.role == role), None)


def describe_serving(version: str | None, shadow: str | None) -> str:
    return f"version {version}" + (f" with version {shadow} in shadow" if shadow else "")


def deploy(
    aws: Connection, model_uri: str, model_version: str, shadow: ShadowModel | None = None
) -> bool:
    """Serve `model_uri` at the endpoint, capturing every request and response.

    With `shadow`, that model is the config's shadow variant: SageMaker sends it a copy
    of every request, captures its answers beside the served ones and returns none of
    them. Without, the endpoint has no shadow (one it had is removed). A version the
    endpoint already runs keeps its SageMaker model. Does nothing (returns False) when
    the endpoint already serves this version with this shadow (or none).
    """
    version = str(model_version)
    shadow_version = str(shadow.model_version) if shadow is not None else None
    endpoint = _updatable_endpoint(aws)
    replaced_config = endpoint["EndpointConfigName"] if endpoint is not None else None
    current = config_variants(aws, replaced_config) if replaced_config else []
    serving = (role_version(current, "production"), role_version(current, "shadow"))
    wanted = describe_serving(version, shadow_version)
    in_service = endpoint is not None and endpoint["EndpointStatus"] == "InService"
    if in_service and serving == (version, shadow_version):
        logger.info("Endpoint %s already serves %s: nothing to do.", aws.endpoint, wanted)
        return False
    if endpoint is not None and endpoint["EndpointStatus"] == "Failed":
        # SageMaker cannot update a failed endpoint: it is replaced.
        logger.warning("Endpoint %s has failed: replacing it.", aws.endpoint)
        delete_endpoint(aws)
        endpoint = None
    wanted_models = [(version, model_uri)]
    if shadow is not None:
        wanted_models.append((str(shadow.model_version), shadow.model_uri))
    # A version that already has a model here keeps it: promoting the shadow, or
    # adding one beside the same champion, uploads and creates only what is new.
    models = {variant.version: variant.model for variant in current if variant.version}
    previous_models = set(models.values())
    _roll_out(aws, wanted_models, models, creating=endpoint is None, serving=serving)
    in_use = {models[wanted_version] for wanted_version, _ in wanted_models}
    if replaced_config is not None:
        delete_resources(
            aws,
            models=sorted(previous_models - in_use),
            configs=[replaced_config],
            missing_ok=True,
        )
    logger.info("Endpoint %s serves %s.", aws.endpoint, wanted)
    return True


def _updatable_endpoint(aws: Connection) -> dict[str, Any] | None:
    """The endpoint's description (None when there is none); BackendError while it is
    changing, which a deployment must wait out."""
    endpoint = describe_endpoint(aws)
    if endpoint is not None and endpoint["EndpointStatus"] not in ("InService", "Failed"):
        raise BackendError(
            f"Endpoint {aws.endpoint} is {endpoint['EndpointStatus']}: wait until it is "
            "InService (or Failed) and deploy again."
        )
    return endpoint


def _roll_out(
    aws: Connection,
    wanted_models: list[tuple[str, str]],
    models: dict[str, str],
    creating: bool,
    serving: tuple[str | None, str | None],
) -> None:
    """Serve `wanted_models` ((version, model URI): production first, then any shadow)
    from a new endpoint config: on a new endpoint when `creating`, else by an update.

    `models` (SageMaker model name by version) gains the models made here. When this
    fails, what it made is deleted and what serves (`serving`: the production and
    shadow versions) is untouched.
    """
    stamp = time_stamp()
    version = wanted_models[0][0]
    shadow_version = wanted_models[1][0] if len(wanted_models) > 1 else None
    config_name = resource_name(
        aws.endpoint, version if shadow_version is None else f"{version}-s{shadow_version}", stamp
    )
    created: list[str] = []
    try:
        _create_models(aws, wanted_models, models, stamp, created)
        create_endpoint_config(
            aws, config_name, version, models[version],
            shadow_version, models.get(shadow_version) if shadow_version else None,
        )  # fmt: skip
        if creating:
            create_endpoint(aws, config_name)
        else:
            request_update(aws, config_name)
    except Exception as error:
        # Refused (or a model not found) before any fleet changed: what serves is
        # untouched, and what this deployment made so far goes.
        delete_resources(aws, models=created, configs=[config_name], missing_ok=True)
        if creating or not isinstance(error, BackendError):
            raise
        raise BackendError(
            f"{error} Nothing changed: endpoint {aws.endpoint} still serves "
            f"{describe_serving(*serving)}."
        ) from None
    if not creating:
        try:
            wait_for_update(aws, config_name)
        except BackendError:
            delete_resources(aws, models=created, configs=[config_name], missing_ok=True)
            raise


def _create_models(
    aws: Connection,
    wanted_models: list[tuple[str, str]],
    models: dict[str, str],
    stamp: str,
    created: list[str],
) -> None:
    """Upload and create a SageMaker model for each wanted version `models` lacks.

    Each is added to `models` and to `created` as soon as it exists, so that a failure
    half way leaves `created` naming what to delete.
    """
    for version, uri in wanted_models:
        if version not in models:
            name = resource_name(aws.endpoint, version, stamp)
            create_model(aws, name, version, upload_model(aws, uri, version))
            created.append(name)
            models[version] = name


def upload_model(aws: Connection, model_uri: str, version: str) -> str:
    """Package the MLflow model as SageMaker wants it (model.tar.gz) and upload it."""
    import mlflow

    from common.registry import quiet_downloads

    bucket, prefix = aws.settings.artifacts_location
    key = join_key(prefix, aws.endpoint, version, "model.tar.gz")
    with tempfile.TemporaryDirectory() as directory:
        with quiet_downloads():
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


def variant(aws: Connection, name: str, model: str) -> dict[str, Any]:
    """A variant on the configured instances, of weight 1.

    For a shadow variant the weight is the share of requests SageMaker copies to it,
    relative to the production variant's: 1 and 1 mean every request.
    """
    return {
        "VariantName": name,
        "ModelName": model,
        "InitialInstanceCount": aws.settings.instance_count,
        "InstanceType": aws.settings.instance_type,
        "InitialVariantWeight": 1.0,
    }


def create_endpoint_config(
    aws: Connection,
    name: str,
    version: str,
    model: str,
    shadow_version: str | None = None,
    shadow_model: str | None = None,
) -> None:
    """One production variant, `version-<N>`, and optionally one shadow, `shadow-<M>`.

    The data capture config covers the whole endpoint: SageMaker captures each variant
    under its own name, the shadow's answers included.
    """
    request: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [variant(aws, variant_name(SERVED, version), model)],
        "DataCaptureConfig": data_capture_config(aws),
        "Tags": tag_list(aws.endpoint, version),
    }
    if shadow_version is not None and shadow_model is not None:
        request["ShadowProductionVariants"] = [
            variant(aws, variant_name(SHADOW, shadow_version), shadow_model)
        ]
    with aws_errors(f"Creating endpoint config {name}"):
        aws.sagemaker.create_endpoint_config(**request)


def create_endpoint(aws: Connection, config_name: str) -> None:
    with aws_errors(f"Creating endpoint {aws.endpoint}"):
        aws.sagemaker.create_endpoint(
            EndpointName=aws.endpoint,
            EndpointConfigName=config_name,
            Tags=[{"Key": ENDPOINT_TAG, "Value": aws.endpoint}],
        )
    wait_in_service(aws)


def request_update(aws: Connection, config_name: str) -> None:
    """Ask for a blue/green update: the new fleet comes up beside the old, then takes all
    the traffic at once (`wait_for_update` waits for it).

    That is SageMaker's default when no `DeploymentConfig` is given. One is not given
    because SageMaker accepts one (its "deployment guardrails") only when the new config
    keeps the old one's variant names, and every deployment here renames them: a new
    version, or a shadow added or removed.
    """
    with aws_errors(f"Updating endpoint {aws.endpoint}"):
        aws.sagemaker.update_endpoint(EndpointName=aws.endpoint, EndpointConfigName=config_name)


def wait_for_update(aws: Connection, config_name: str) -> None:
    """Wait for the update to `config_name`; say why when it did not take.

    When the new fleet fails, SageMaker keeps the old one and the endpoint returns to
    InService on the old config: only the config in service tells success apart.
    """
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
