"""Tests for backends.sagemaker.deployment: a first deployment, blue/green updates, shadow
variants, and what a refused or failed one leaves behind, against moto on 127.0.0.1.

moto implements SageMaker's create/describe/delete calls and tags, S3, STS and ECR. It
does not implement `UpdateEndpoint`, and it keeps no shadow variant (its
CreateEndpointConfig drops `ShadowProductionVariants`, moto/sagemaker/models.py), so
those paths are checked with botocore's `Stubber` on the SageMaker client: the exact
requests are asserted, while model archives go to moto's S3.
"""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from support.sagemaker_setup import (
    ARN,
    BUCKET,
    ENDPOINT_NAME,
    IMAGE,
    NEW,
    ROLE,
    SETTINGS,
    STAMP,
    described_endpoint,
    sagemaker_client,
    stub_endpoint_serving,
    stub_removal_of_old_resources,
    stub_serving_version_1,
    stubbed_backend,
)

from backends.base import BackendError, ShadowModel
from backends.sagemaker import Sagemaker, deployment
from backends.sagemaker.deployment import resource_name

# --- deploying -----------------------------------------------------------------------


def test_deploy_creates_a_capturing_endpoint_tagged_with_the_version(
    sagemaker_moto: Any, fake_model_dir: Path
) -> None:
    backend = Sagemaker(SETTINGS)
    assert backend.deployed_version() is None

    assert backend.deploy(str(fake_model_dir), "1") is True

    sagemaker = sagemaker_client()
    endpoint = sagemaker.describe_endpoint(EndpointName="penguins-test")
    assert endpoint["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == 100
    assert capture["DestinationS3Uri"] == f"s3://{BUCKET}/datastore"
    assert {option["CaptureMode"] for option in capture["CaptureOptions"]} == {"Input", "Output"}
    assert capture["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}
    (variant,) = config["ProductionVariants"]
    assert variant["VariantName"] == "version-1"

    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["Environment"]["SERVING_MODEL_VERSION"] == "1"
    tags = {
        t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=model["ModelArn"])["Tags"]
    }
    assert tags == {"model_version": "1", "endpoint": "penguins-test"}
    assert backend.deployed_version() == "1"

    # SageMaker unpacks model.tar.gz into /opt/ml/model: MLmodel must be at its root.
    data = model["PrimaryContainer"]["ModelDataUrl"]
    assert data == f"s3://{BUCKET}/models/penguins-test/1/model.tar.gz"
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=data.removeprefix(f"s3://{BUCKET}/"))[
        "Body"
    ]
    with tarfile.open(fileobj=io.BytesIO(body.read())) as archive:
        assert sorted(archive.getnames()) == ["MLmodel", "artifacts", "artifacts/weights.bin"]


def test_deploying_the_serving_version_again_changes_nothing(
    sagemaker_moto: Any, fake_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = Sagemaker(SETTINGS)
    backend.deploy(str(fake_model_dir), "1")
    models_before = sagemaker_client().list_models()["Models"]

    with caplog.at_level(logging.INFO):
        assert backend.deploy(str(fake_model_dir), "1") is False

    assert sagemaker_client().list_models()["Models"] == models_before
    assert "already serves version 1" in caplog.text


def test_the_default_image_is_mlflows_in_the_accounts_ecr(sagemaker_moto: Any) -> None:
    settings = {key: value for key, value in SETTINGS.items() if key != "image"}
    backend = Sagemaker(settings)
    with pytest.raises(BackendError, match="build-and-push-container"):
        deployment.image(backend.aws)
    uri = boto3.client("ecr").create_repository(repositoryName="mlflow-pyfunc")["repository"][
        "repositoryUri"
    ]
    import mlflow

    assert deployment.image(backend.aws) == f"{uri}:{mlflow.__version__}"


# --- updating (UpdateEndpoint is not in moto: exact requests through Stubber) ---------


def test_a_new_version_is_a_blue_green_update_that_removes_the_old_resources(
    sagemaker_moto: Any, fake_model_dir: Path, stubbed_time: None
) -> None:
    backend, client = stubbed_backend({**SETTINGS, "wait_seconds": 60})
    tags = [{"Key": "endpoint", "Value": "penguins-test"}, {"Key": "model_version", "Value": "2"}]
    with Stubber(client) as stub:
        stub_serving_version_1(stub)
        # The new model and config, named after the endpoint, version 2 and the time.
        stub.add_response(
            "create_model",
            {"ModelArn": f"{ARN}:model/new"},
            {
                "ModelName": NEW,
                "PrimaryContainer": {
                    "Image": IMAGE,
                    "ModelDataUrl": f"s3://{BUCKET}/models/penguins-test/2/model.tar.gz",
                    "Environment": {
                        "MLFLOW_DEPLOYMENT_FLAVOR_NAME": "python_function",
                        "SERVING_MODEL_VERSION": "2",
                    },
                },
                "ExecutionRoleArn": ROLE,
                "Tags": tags,
            },
        )
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"{ARN}:endpoint-config/new"},
            {
                "EndpointConfigName": NEW,
                "ProductionVariants": [
                    {
                        "VariantName": "version-2",
                        "ModelName": NEW,
                        "InitialInstanceCount": 1,
                        "InstanceType": "ml.m5.large",
                        "InitialVariantWeight": 1.0,
                    }
                ],
                "DataCaptureConfig": deployment.data_capture_config(backend.aws),
                "Tags": tags,
            },
        )
        # Blue/green, all at once: SageMaker's default update. No DeploymentConfig: it
        # is refused when the variant names change, and version-1 becomes version-2.
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": f"{ARN}:endpoint/penguins-test"},
            {"EndpointName": "penguins-test", "EndpointConfigName": NEW},
        )
        serving_new = described_endpoint("InService", EndpointConfigName=NEW)
        stub.add_response("describe_endpoint", serving_new, ENDPOINT_NAME)  # the waiter
        stub.add_response("describe_endpoint", serving_new, ENDPOINT_NAME)  # which config?
        # The resources the update made obsolete.
        stub_removal_of_old_resources(stub)

        assert backend.deploy(str(fake_model_dir), "2") is True
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("after_update", "message"),
    [
        # The new fleet failed and the endpoint with it.
        (
            described_endpoint("Failed", FailureReason="health check failed"),
            r"did not come into service.*health check failed",
        ),
        # The new fleet never got healthy: SageMaker put the endpoint back on `old`.
        (
            described_endpoint("InService", FailureReason="container failed ping"),
            r"kept the previous version serving: container failed ping",
        ),
    ],
    ids=["endpoint failed", "rolled back by sagemaker"],
)
def test_a_failed_update_removes_only_what_it_created_and_says_why(
    sagemaker_moto: Any, fake_model_dir: Path, stubbed_time: None, after_update: dict, message: str
) -> None:
    backend, client = stubbed_backend(SETTINGS)
    with Stubber(client) as stub:
        stub_serving_version_1(stub)
        stub.add_response("create_model", {"ModelArn": f"{ARN}:model/new"})
        stub.add_response("create_endpoint_config", {"EndpointConfigArn": f"{ARN}:config/new"})
        stub.add_response("update_endpoint", {"EndpointArn": f"{ARN}:endpoint/penguins-test"})
        stub.add_response("describe_endpoint", after_update, ENDPOINT_NAME)  # the waiter
        stub.add_response("describe_endpoint", after_update, ENDPOINT_NAME)  # then the check
        # Only what this deployment created is removed; `old` is left alone.
        stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": NEW})
        stub.add_response("delete_model", {}, {"ModelName": NEW})

        with pytest.raises(BackendError, match=message):
            backend.deploy(str(fake_model_dir), "2")
        stub.assert_no_pending_responses()


def test_a_failed_endpoint_is_replaced_not_updated(
    sagemaker_moto: Any, fake_model_dir: Path
) -> None:
    """SageMaker refuses to update a Failed endpoint: it is deleted and created anew.

    Stubber: moto's endpoints never fail."""
    backend, client = stubbed_backend(SETTINGS)
    with Stubber(client) as stub:
        stub_serving_version_1(stub, status="Failed")
        stub.add_response("delete_endpoint", {}, ENDPOINT_NAME)
        stub.add_client_error(
            "describe_endpoint", "ValidationException", "Could not find endpoint", 400
        )  # the deletion waiter
        stub.add_response("create_model", {"ModelArn": f"{ARN}:model/new"})
        stub.add_response("create_endpoint_config", {"EndpointConfigArn": f"{ARN}:config/new"})
        stub.add_response(
            "create_endpoint",
            {"EndpointArn": f"{ARN}:endpoint/penguins-test"},
            {"EndpointName": "penguins-test", "EndpointConfigName": ANY, "Tags": ANY},
        )
        stub.add_response("describe_endpoint", described_endpoint("InService"), ENDPOINT_NAME)
        stub_removal_of_old_resources(stub)

        assert backend.deploy(str(fake_model_dir), "2") is True
        stub.assert_no_pending_responses()


MODEL_V2 = f"penguins-test-v2-{STAMP}"


SHADOW_CONFIG = f"penguins-test-v1-s2-{STAMP}"


TAGS_V1 = [{"Key": "endpoint", "Value": "penguins-test"}, {"Key": "model_version", "Value": "1"}]


def variant(name: str, model: str) -> dict[str, Any]:
    """A variant as the backend asks for it, on the default instances."""
    return {
        "VariantName": name, "ModelName": model, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0,
    }  # fmt: skip


def stub_model_creation(stub: Stubber, name: str, version: str) -> None:
    stub.add_response(
        "create_model",
        {"ModelArn": f"{ARN}:model/{name}"},
        {
            "ModelName": name,
            "PrimaryContainer": {
                "Image": IMAGE,
                "ModelDataUrl": f"s3://{BUCKET}/models/penguins-test/{version}/model.tar.gz",
                "Environment": {
                    "MLFLOW_DEPLOYMENT_FLAVOR_NAME": "python_function",
                    "SERVING_MODEL_VERSION": version,
                },
            },
            "ExecutionRoleArn": ROLE,
            "Tags": [
                {"Key": "endpoint", "Value": "penguins-test"},
                {"Key": "model_version", "Value": version},
            ],
        },
    )


def stub_update_to(stub: Stubber, config: str) -> None:
    """The update to `config`, and the endpoint in service on it afterwards."""
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": f"{ARN}:endpoint/penguins-test"},
        {"EndpointName": "penguins-test", "EndpointConfigName": config},
    )
    serving = described_endpoint("InService", EndpointConfigName=config)
    stub.add_response("describe_endpoint", serving, ENDPOINT_NAME)  # the waiter
    stub.add_response("describe_endpoint", serving, ENDPOINT_NAME)  # which config?


# --- deploying a shadow (Stubber: moto keeps no shadow variants) ----------------------


def test_a_shadow_is_a_shadow_variant_beside_the_served_model_and_is_read_back(
    sagemaker_moto: Any, fake_model_dir: Path, stubbed_time: None
) -> None:
    backend, client = stubbed_backend({**SETTINGS, "wait_seconds": 60})
    with Stubber(client) as stub:
        stub_serving_version_1(stub)
        # Version 1 keeps its model; only the shadow's is uploaded and created.
        stub_model_creation(stub, MODEL_V2, "2")
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"{ARN}:endpoint-config/{SHADOW_CONFIG}"},
            {
                "EndpointConfigName": SHADOW_CONFIG,
                "ProductionVariants": [variant("version-1", "old-model")],
                "ShadowProductionVariants": [variant("shadow-2", MODEL_V2)],
                # One capture config for the endpoint: both variants are captured.
                "DataCaptureConfig": deployment.data_capture_config(backend.aws),
                "Tags": TAGS_V1,
            },
        )
        stub_update_to(stub, SHADOW_CONFIG)
        # The old config goes; its model still serves, so it stays.
        stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "old"})

        assert backend.deploy(str(fake_model_dir), "1", ShadowModel(str(fake_model_dir), "2"))
        stub.assert_no_pending_responses()

        # Read back from the endpoint's config: the shadow variant's model and its tags.
        serving = [("version-1", "old-model", "1")]
        shadows = [("shadow-2", MODEL_V2, "2")]
        stub_endpoint_serving(stub, SHADOW_CONFIG, serving, shadows, asked="shadow")
        assert backend.deployed_shadow_version() == "2"
        stub_endpoint_serving(stub, SHADOW_CONFIG, serving, shadows, asked="production")
        assert backend.deployed_version() == "1"
        # The same pair again changes nothing.
        stub_endpoint_serving(stub, SHADOW_CONFIG, serving, shadows)
        assert not backend.deploy(str(fake_model_dir), "1", ShadowModel(str(fake_model_dir), "2"))
        stub.assert_no_pending_responses()

    archive = boto3.client("s3").head_object(
        Bucket=BUCKET, Key="models/penguins-test/2/model.tar.gz"
    )
    assert archive["ContentLength"] > 0
    # Without a shadow, an endpoint has no shadow version.
    with Stubber(client) as stub:
        stub_endpoint_serving(stub, "old", [("version-1", "old-model", "1")], asked="shadow")
        assert backend.deployed_shadow_version() is None


def test_a_first_deployment_with_a_shadow_creates_both_models_on_moto(
    sagemaker_moto: Any, fake_model_dir: Path
) -> None:
    """The create path against moto: both models and archives, tagged with their
    versions, and the endpoint in service (moto drops the shadow variant itself, which
    the Stubber test above checks)."""
    backend = Sagemaker(SETTINGS)
    assert backend.deploy(str(fake_model_dir), "4", ShadowModel(str(fake_model_dir), "5"))

    sagemaker = sagemaker_client()
    assert sagemaker.describe_endpoint(EndpointName="penguins-test")["EndpointStatus"] == (
        "InService"
    )
    versions = set()
    for model in sagemaker.list_models()["Models"]:
        tags = sagemaker.list_tags(ResourceArn=model["ModelArn"])["Tags"]
        versions |= {tag["Value"] for tag in tags if tag["Key"] == "model_version"}
    assert versions == {"4", "5"}
    s3 = boto3.client("s3")
    for version in ("4", "5"):
        s3.head_object(Bucket=BUCKET, Key=f"models/penguins-test/{version}/model.tar.gz")
    assert backend.deployed_version() == "4"


def test_deploying_without_the_shadow_removes_it_and_promoting_it_reuses_its_model(
    sagemaker_moto: Any, stubbed_time: None
) -> None:
    """Promote the shadow: version 2 serves alone, on the model it ran in shadow
    (nothing uploaded: the model URI does not even exist), version 1's model goes."""
    backend, client = stubbed_backend(SETTINGS)
    promoted = f"penguins-test-v2-{STAMP}"
    with Stubber(client) as stub:
        stub_endpoint_serving(
            stub, "paired", [("version-1", "model-1", "1")], [("shadow-2", "model-2", "2")]
        )
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"{ARN}:endpoint-config/{promoted}"},
            {
                "EndpointConfigName": promoted,
                "ProductionVariants": [variant("version-2", "model-2")],
                "DataCaptureConfig": deployment.data_capture_config(backend.aws),
                "Tags": [
                    {"Key": "endpoint", "Value": "penguins-test"},
                    {"Key": "model_version", "Value": "2"},
                ],
            },
        )
        stub_update_to(stub, promoted)
        stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "paired"})
        stub.add_response("delete_model", {}, {"ModelName": "model-1"})

        assert backend.deploy("/no/such/model", "2") is True
        stub.assert_no_pending_responses()


@pytest.mark.parametrize("refused", ["create_endpoint_config", "update_endpoint"])
def test_a_shadow_sagemaker_refuses_leaves_the_endpoint_as_it_was(
    sagemaker_moto: Any, fake_model_dir: Path, stubbed_time: None, refused: str
) -> None:
    """SageMaker refuses the config (e.g. an instance type shadows cannot use) or the
    update: only what this deployment created is deleted, the old config and model
    stay, and the error says what still serves."""
    backend, client = stubbed_backend(SETTINGS)
    message = "ShadowProductionVariants is not supported for this endpoint."
    with Stubber(client) as stub:
        stub_serving_version_1(stub)
        stub.add_response("create_model", {"ModelArn": f"{ARN}:model/{MODEL_V2}"})
        if refused == "create_endpoint_config":
            stub.add_client_error(refused, "ValidationException", message, 400)
            # Never created: deleting it is answered "not found", which is fine.
            stub.add_client_error(
                "delete_endpoint_config", "ValidationException", "Could not find it.", 400
            )
        else:
            stub.add_response(
                "create_endpoint_config", {"EndpointConfigArn": f"{ARN}:c/{SHADOW_CONFIG}"}
            )
            stub.add_client_error(refused, "ValidationException", message, 400)
            stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": SHADOW_CONFIG})
        stub.add_response("delete_model", {}, {"ModelName": MODEL_V2})

        with pytest.raises(BackendError) as error:
            backend.deploy(str(fake_model_dir), "1", ShadowModel(str(fake_model_dir), "2"))
        stub.assert_no_pending_responses()
    text = str(error.value)
    assert f"ValidationException: {message}" in text
    assert text.endswith("Nothing changed: endpoint penguins-test still serves version 1.")


def test_resource_names_fit_sagemaker_limits() -> None:
    name = resource_name("x" * 80, "12", "20261128040506")
    assert len(name) == 63 and name.endswith("-v12-20261128040506")
