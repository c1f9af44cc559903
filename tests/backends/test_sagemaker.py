"""The SageMaker backend against moto running as a server process on 127.0.0.1.

moto implements SageMaker's create/describe/delete calls and tags, S3, STS and ECR. It
does not implement `UpdateEndpoint`, so the update path is checked with botocore's
`Stubber` on the SageMaker client: the exact requests are asserted, S3 stays on moto.
moto writes no capture files either: the tests write them, in SageMaker's format.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    ROW,
    SETTINGS,
    answers,
    described_endpoint,
    sagemaker_client,
    stub_removal_of_old_resources,
    stub_serving_version_1,
    stubbed_backend,
    write_captures,
)

from backends.aws import client_config
from backends.base import CAPTURE_COLUMNS, BackendError
from backends.sagemaker import Sagemaker, deployment
from backends.sagemaker.formats import hour_prefix

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


def test_assume_role_is_honoured_and_its_secrets_are_never_logged(
    sagemaker_moto: Any,
    fake_model_dir: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    role = boto3.client("iam").create_role(
        RoleName="deployer", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    settings = {**SETTINGS, "assume_role": role}
    del settings["execution_role"]
    backend = Sagemaker(settings)

    with caplog.at_level(logging.DEBUG):
        backend.deploy(str(fake_model_dir), "1")
        backend.deployed_version()

    identity = backend.client("sts").get_caller_identity()["Arn"]
    assert ":assumed-role/deployer/" in identity
    model_name = sagemaker_client().list_models()["Models"][0]["ModelName"]
    assert sagemaker_client().describe_model(ModelName=model_name)["ExecutionRoleArn"] == role
    credentials = backend.aws.session.get_credentials().get_frozen_credentials()
    logged = caplog.text + "".join(capsys.readouterr())
    for secret in (credentials.secret_key, credentials.token, "testing"):
        assert secret not in logged


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


# --- invoking, capture, labels ---------------------------------------------------------


def test_invoke_goes_through_sagemaker_runtime(sagemaker_moto: Any) -> None:
    predictions = answers("Gentoo")
    sagemaker_moto.queue_sagemaker_results([{"predictions": predictions}])
    assert Sagemaker(SETTINGS).invoke([ROW]) == {"predictions": predictions}


def test_load_reads_captures_newest_first_with_the_local_backends_columns(
    sagemaker_moto: Any,
) -> None:
    start = datetime(2026, 11, 28, 3, 58, tzinfo=UTC)
    write_captures("1", start, [("e1", [ROW, ROW], answers("Adelie", "Gentoo", prefix="a"))])
    write_captures("2", start + timedelta(minutes=5), [
        ("e2", [ROW], answers("Gentoo", prefix="b")),
        ("e3", [ROW], answers("Chinstrap", prefix="c")),
    ])  # fmt: skip
    boto3.client("s3").put_object(Bucket=BUCKET, Key="datastore/other-endpoint/x.jsonl", Body=b"")

    frame = Sagemaker(SETTINGS).load(limit=10)

    assert frame is not None
    assert list(frame["id"]) == ["c0", "b0", "a0", "a1"]
    assert list(frame["model_version"]) == ["2", "2", "1", "1"]
    assert list(frame["prediction"]) == ["Chinstrap", "Gentoo", "Adelie", "Gentoo"]
    assert frame["ground_truth"].isna().all()
    expected = set(ROW) | set(CAPTURE_COLUMNS) - {"inputs"}
    assert set(frame.columns) == expected
    assert str(frame["created_at"].dt.tz) == "UTC"
    assert len(Sagemaker(SETTINGS).load(limit=2)) == 2
    assert Sagemaker(SETTINGS).load(limit=10, labeled_only=True) is None


def test_load_without_captures_is_none(sagemaker_moto: Any) -> None:
    assert Sagemaker(SETTINGS).load() is None


def test_labels_are_written_per_event_where_model_monitor_reads_them(sagemaker_moto: Any) -> None:
    when = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
    write_captures("1", when, [
        ("e1", [ROW, ROW], answers("Adelie", "Gentoo", prefix="a")),
        ("e2", [ROW], answers("Chinstrap", prefix="b")),
    ])  # fmt: skip
    backend = Sagemaker(SETTINGS)

    assert backend.label(ground_truth_quality=1.0) == 3
    assert backend.label(ground_truth_quality=1.0) == 0  # nothing left unlabelled

    s3 = boto3.client("s3")
    (key,) = [
        item["Key"]
        for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="ground-truth/")["Contents"]
    ]
    assert key.startswith(f"ground-truth/{hour_prefix(datetime.now(UTC))}/") and key.endswith(
        ".jsonl"
    )
    lines = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    records = {json.loads(line)["eventMetadata"]["eventId"]: json.loads(line) for line in lines}
    assert set(records) == {"e1", "e2"}
    assert json.loads(records["e1"]["groundTruthData"]["data"]) == ["Adelie", "Gentoo"]

    frame = backend.load(limit=10, labeled_only=True)
    assert frame is not None and list(frame["ground_truth"]) == list(frame["prediction"])


def test_label_by_id_joins_by_event_and_position_and_keeps_other_labels(
    sagemaker_moto: Any,
) -> None:
    write_captures("1", datetime(2026, 11, 28, 4, tzinfo=UTC), [
        ("e1", [ROW, ROW], answers("Adelie", "Gentoo", prefix="a")),
    ])  # fmt: skip
    backend = Sagemaker(SETTINGS)
    assert backend.label_by_id({"a1": "Chinstrap", "unknown": "Adelie"}) == 1
    assert backend.label_by_id({"a0": "Adelie"}) == 1

    frame = backend.load(limit=10, labeled_only=True)
    assert frame is not None
    assert dict(zip(frame["id"], frame["ground_truth"], strict=True)) == {
        "a0": "Adelie", "a1": "Chinstrap",
    }  # fmt: skip
    assert backend.ground_truth() == {"e1": ["Adelie", "Chinstrap"]}


# --- stopping, errors ------------------------------------------------------------------


def test_delete_removes_everything_made_for_the_endpoint_but_the_data(
    sagemaker_moto: Any, fake_model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    backend = Sagemaker(SETTINGS)
    backend.deploy(str(fake_model_dir), "1")
    key = write_captures("1", datetime(2026, 11, 28, 4, tzinfo=UTC), [
        ("e1", [ROW], answers("Adelie")),
    ])  # fmt: skip
    sagemaker = sagemaker_client()
    sagemaker.create_model(
        ModelName="someone-elses", PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=ROLE
    )

    from backends.sagemaker.cli import main

    config = Path(__file__).parents[2] / "config" / "sagemaker.yml"
    environment = {"BUCKET": BUCKET, "ENDPOINT_NAME": "penguins-test"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        assert main(["status", "--config", str(config)]) == 0
        assert "InService, model version 1, 1 x ml.m5.large." in capsys.readouterr().out
        assert main(["delete", "--config", str(config)]) == 0
        assert main(["status", "--config", str(config)]) == 1

    assert backend.describe_endpoint() is None
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["someone-elses"]
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    keys = [item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [key]  # the captured data stays


def test_aws_errors_become_one_clear_message(sagemaker_moto: Any) -> None:
    backend = Sagemaker({**SETTINGS, "ground_truth_uri": "s3://no-such-bucket/labels"})
    with pytest.raises(BackendError, match=r"NoSuchBucket.*create it, or fix the S3 URI"):
        backend.ground_truth()


class FlakyAws(BaseHTTPRequestHandler):
    """Answers ThrottlingException twice, then that the endpoint does not exist."""

    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        throttled = type(self).calls <= 2
        code = "ThrottlingException" if throttled else "ValidationException"
        message = "Rate exceeded" if throttled else "Could not find endpoint penguins-test."
        body = json.dumps({"__type": code, "message": message}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky_aws() -> Iterator[str]:
    FlakyAws.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyAws)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_throttling_is_retried_with_backoff(moto_server: Any, flaky_aws: str) -> None:
    backend = Sagemaker(SETTINGS)
    backend.aws.clients["sagemaker"] = boto3.client(
        "sagemaker", endpoint_url=flaky_aws, region_name="us-east-1", config=client_config()
    )
    assert backend.deployed_version() is None
    assert FlakyAws.calls == 3
