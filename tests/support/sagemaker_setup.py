"""What the SageMaker backend's tests share: settings, a fresh moto, stubbed replies.

moto stands in for S3 and for the SageMaker calls it implements; where it does not
(UpdateEndpoint, shadow variants, failing endpoints), botocore's `Stubber` on the
SageMaker client checks the exact requests and gives SageMaker's replies. The fixtures
(`sagemaker_moto`, `fake_model_dir`, `stubbed_time`) are exposed in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from backends.sagemaker import Sagemaker, formats
from support.sagemaker_records import capture_key, capture_record

BUCKET = "penguins-test"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.17.2"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
SETTINGS = {
    "module": "backend.Sagemaker",
    "target": "penguins-test",
    "data_capture_uri": f"s3://{BUCKET}/datastore",
    "ground_truth_uri": f"s3://{BUCKET}/ground-truth",
    "region": "us-east-1",
    "execution_role": ROLE,
    "image": IMAGE,
}
# Only the settings the backend requires, for the tests of settings (no AWS is contacted).
REQUIRED_SETTINGS = {
    "module": "backend.Sagemaker",
    "target": "penguins",
    "data_capture_uri": "s3://bucket/datastore",
    "ground_truth_uri": "s3://bucket/ground-truth",
    "region": "us-east-1",
}
ROW = {
    "island": "Biscoe", "culmen_length_mm": 48.0, "culmen_depth_mm": 15.0,
    "flipper_length_mm": 220.0, "body_mass_g": 5200.0, "sex": "MALE",
}  # fmt: skip


@pytest.fixture
def sagemaker_moto(moto_server: Any) -> Any:
    """A fresh moto with the bucket the settings name."""
    moto_server.reset()
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return moto_server


@pytest.fixture
def fake_model_dir(tmp_path: Path) -> Path:
    """Stands in for a downloaded MLflow model: the backend only archives it."""
    model = tmp_path / "model"
    (model / "artifacts").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {python_function: {}}\n")
    (model / "artifacts" / "weights.bin").write_bytes(b"\x00" * 16)
    return model


def sagemaker_client() -> Any:
    return boto3.client("sagemaker", region_name="us-east-1")


def write_captures(
    version: str, when: datetime, events: list[tuple[Any, ...]], role: str = formats.SERVED
) -> str:
    """One capture file as SageMaker writes it, for requests answered by `version` in
    `role`; an event is (event id, rows, predictions[, inference id])."""
    name = f"{role}-{when.timestamp():.0f}"
    key = capture_key("datastore", SETTINGS["target"], version, when, name, role)
    body = "\n".join(
        capture_record(event[0], when + timedelta(seconds=i), event[1], event[2], *event[3:])
        for i, event in enumerate(events)
    )
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    return key


def answers(*classes: str, prefix: str = "p") -> list[dict]:
    return [
        {"prediction": name, "confidence": 0.9, "id": f"{prefix}{i}"}
        for i, name in enumerate(classes)
    ]


# --- SageMaker's replies, for Stubber -------------------------------------------------

EPOCH = datetime(2026, 1, 1)
ARN = "arn:aws:sagemaker:us-east-1:123456789012"
ENDPOINT_NAME = {"EndpointName": "penguins-test"}
STAMP = "20261128040000"
NEW = f"penguins-test-v2-{STAMP}"  # the new model's and config's name


@pytest.fixture
def stubbed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resource names carry the time: fix it, so the stubs can expect exact names."""
    monkeypatch.setattr("backends.sagemaker.deployment.time_stamp", lambda: STAMP)


def described_endpoint(status: str, **extra: Any) -> dict[str, Any]:
    """What describe_endpoint answers for an endpoint serving config `old`."""
    return {
        "EndpointName": "penguins-test", "EndpointArn": f"{ARN}:endpoint/penguins-test",
        "EndpointConfigName": "old", "EndpointStatus": status,
        "CreationTime": EPOCH, "LastModifiedTime": EPOCH, **extra,
    }  # fmt: skip


def stub_endpoint_serving(
    stub: Stubber,
    config: str,
    variants: Sequence[tuple[str, str, str]],
    shadows: Sequence[tuple[str, str, str]] = (),
    status: str = "InService",
    asked: str = "all",
) -> None:
    """The calls that find the endpoint, its config `config` and the version of the
    model of each variant `asked` about (`all`, `production` or `shadow`): variants
    and shadows are (variant name, model name, version)."""
    stub.add_response(
        "describe_endpoint", described_endpoint(status, EndpointConfigName=config), ENDPOINT_NAME
    )
    reply: dict[str, Any] = {
        "EndpointConfigName": config, "EndpointConfigArn": f"{ARN}:endpoint-config/{config}",
        "ProductionVariants": [{"VariantName": v, "ModelName": m} for v, m, _ in variants],
        "CreationTime": EPOCH,
    }  # fmt: skip
    if shadows:
        reply["ShadowProductionVariants"] = [
            {"VariantName": v, "ModelName": m} for v, m, _ in shadows
        ]
    stub.add_response("describe_endpoint_config", reply, {"EndpointConfigName": config})
    read = {"all": [*variants, *shadows], "production": variants, "shadow": shadows}[asked]
    for _, model, version in read:
        model_arn = f"{ARN}:model/{model}"
        stub.add_response(
            "describe_model",
            {"ModelName": model, "ModelArn": model_arn, "CreationTime": EPOCH},
            {"ModelName": model},
        )
        stub.add_response(
            "list_tags",
            {"Tags": [{"Key": "model_version", "Value": version}]},
            {"ResourceArn": model_arn},
        )


def stub_serving_version_1(stub: Stubber, status: str = "InService") -> None:
    """Endpoint config `old`: one variant, version-1, running model `old-model`."""
    stub_endpoint_serving(stub, "old", [("version-1", "old-model", "1")], status=status)


def stub_removal_of_old_resources(stub: Stubber) -> None:
    stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "old"})
    stub.add_response("delete_model", {}, {"ModelName": "old-model"})


def stubbed_backend(settings: dict[str, Any]) -> tuple[Sagemaker, Any]:
    """A backend whose SageMaker client is stubbed; S3 stays on moto."""
    backend = Sagemaker(settings)
    client = sagemaker_client()
    backend.aws.clients["sagemaker"] = client
    return backend, client
