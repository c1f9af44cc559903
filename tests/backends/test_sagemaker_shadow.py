"""SageMaker shadow variants, their captures joined to the served ones, batch saves.

moto keeps no shadow variant: its CreateEndpointConfig drops `ShadowProductionVariants`
and its DescribeEndpointConfig returns none (moto/sagemaker/models.py, FakeEndpointConfig
has no such field), and it implements no UpdateEndpoint. So deploying and reading back a
shadow is checked with botocore's `Stubber` on the SageMaker client: the exact requests
are asserted, while model archives go to moto's S3. What SageMaker would write to S3
(each variant's capture files) is written by the tests to moto's S3, in SageMaker's
format, and read back by the backend; batch saves are written by the backend itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.stub import ANY, Stubber
from support.sagemaker_setup import (
    ARN,
    BUCKET,
    ENDPOINT_NAME,
    IMAGE,
    ROLE,
    ROW,
    SETTINGS,
    STAMP,
    answers,
    described_endpoint,
    sagemaker_client,
    stub_endpoint_serving,
    stub_serving_version_1,
    stubbed_backend,
    write_captures,
)

from backends.base import BackendError, ShadowModel
from backends.sagemaker import Sagemaker, data, deployment
from backends.sagemaker.formats import SHADOW

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


def test_invoke_names_each_request_so_its_shadow_answer_can_be_joined(
    sagemaker_moto: Any,
) -> None:
    """Stubber on sagemaker-runtime: moto accepts, and records nowhere, the InferenceId."""
    backend = Sagemaker(SETTINGS)
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    backend.aws.clients["sagemaker-runtime"] = runtime
    body = json.dumps({"predictions": answers("Gentoo")}).encode()
    import io

    from botocore.response import StreamingBody

    with Stubber(runtime) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"},
            {
                "EndpointName": "penguins-test", "ContentType": "application/json",
                "Accept": "application/json", "Body": json.dumps({"inputs": [ROW]}),
                "InferenceId": ANY,
            },
        )  # fmt: skip
        assert backend.invoke([ROW]) == {"predictions": answers("Gentoo")}
        stub.assert_no_pending_responses()


# --- the shadow's captures, joined (moto S3, files as SageMaker writes them) ----------


def test_load_puts_the_shadows_answer_beside_the_served_one_and_one_label_serves_both(
    sagemaker_moto: Any,
) -> None:
    when = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
    # Served by version 1; the model gives each row its own id.
    write_captures("1", when, [
        ("e1", [ROW, ROW], answers("Adelie", "Gentoo", prefix="a"), "req-1"),
        ("e2", [ROW], answers("Chinstrap", prefix="b"), "req-2"),
        ("e3", [ROW], answers("Gentoo", prefix="c"), "req-3"),  # shadow's answer lost
        ("e4", [ROW], answers("Adelie", prefix="d")),  # no inference id: joined by event
    ])  # fmt: skip
    # The shadow, version 2: other event ids and row ids, the same inference ids; its
    # file was written a little earlier, in the hour before.
    write_captures("2", when - timedelta(minutes=1), [
        ("s1", [ROW, ROW], answers("Chinstrap", "Gentoo", prefix="x"), "req-1"),
        ("s2", [ROW], answers("Chinstrap", prefix="y"), "req-2"),
        ("e4", [ROW], answers("Gentoo", prefix="z")),
    ], role=SHADOW)  # fmt: skip
    backend = Sagemaker(SETTINGS)

    frame = backend.load(limit=10)

    assert frame is not None
    by_id = frame.set_index("id")
    assert list(frame["id"]) == ["d0", "c0", "b0", "a0", "a1"]  # the shadow's rows are no rows
    assert list(by_id.loc[["a0", "a1", "b0", "d0"], "shadow_prediction"]) == [
        "Chinstrap", "Gentoo", "Chinstrap", "Gentoo",
    ]  # fmt: skip
    assert set(by_id.loc[["a0", "a1", "b0", "d0"], "shadow_version"]) == {"2"}
    assert list(by_id.loc[["a0"], "shadow_confidence"]) == [0.9]
    assert by_id.loc["c0", ["shadow_version", "shadow_prediction"]].isna().all()
    assert set(frame["model_version"]) == {"1"} and set(frame["source"]) == {"online"}

    # Labels go by the served row's id, and label both answers of the row.
    assert backend.label_by_id({"a0": "Chinstrap", "b0": "Adelie", "x0": "Gentoo"}) == 2
    labeled = backend.load(limit=10, labeled_only=True)
    assert labeled is not None
    assert list(labeled["id"]) == ["b0", "a0"]
    assert list(labeled["ground_truth"]) == ["Adelie", "Chinstrap"]
    assert list(labeled["prediction"]) == ["Chinstrap", "Adelie"]
    assert list(labeled["shadow_prediction"]) == ["Chinstrap", "Chinstrap"]

    # The newest row alone still finds its shadow, in a file older than its own.
    newest = backend.load(limit=1)
    assert newest is not None and list(newest["shadow_prediction"]) == ["Gentoo"]


# --- batch saves (moto S3, written by the backend) ------------------------------------


def batch_frames(count: int, version: str = "3") -> tuple[pd.DataFrame, pd.DataFrame]:
    inputs = pd.DataFrame([ROW] * count)
    inputs.loc[0, "sex"] = None  # a missing value stays missing
    inputs.loc[1, "body_mass_g"] = float("nan")
    outputs = pd.DataFrame({
        "prediction": ["Adelie", "Gentoo"] * (count // 2) + ["Adelie"] * (count % 2),
        "confidence": [0.75] * count,
        "id": [f"batch-{i}" for i in range(count)],
        "model_version": [version] * count,
    })  # fmt: skip
    return inputs, outputs


def capture_objects() -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="datastore/")
    return [item["Key"] for item in listing.get("Contents", [])]


def test_batch_predictions_are_saved_as_captures_and_labelled_like_online_ones(
    sagemaker_moto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_captures("1", datetime(2026, 11, 28, 4, tzinfo=UTC), [
        ("e1", [ROW], answers("Gentoo", prefix="online")),
    ])  # fmt: skip
    backend = Sagemaker(SETTINGS)
    inputs, outputs = batch_frames(2_500)

    backend.save(inputs, outputs, source="online")  # the endpoint captured those itself
    assert len(capture_objects()) == 1
    # Few objects, whatever the rows: 1,000 rows a record, here 2,000 rows an object.
    monkeypatch.setattr(data, "SAVED_ROWS_PER_OBJECT", 2_000)
    backend.save(inputs, outputs, source="batch")

    keys = sorted(key for key in capture_objects() if "/batch-3/" in key)
    assert len(keys) == 2
    s3 = boto3.client("s3")
    records = [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    ]
    sizes = [len(json.loads(r["captureData"]["endpointInput"]["data"])["inputs"]) for r in records]
    assert sorted(sizes) == [500, 1_000, 1_000]
    assert all(r["captureData"]["endpointOutput"]["encoding"] == "JSON" for r in records)

    frame = backend.load(limit=3_000)
    assert frame is not None and len(frame) == 2_501
    batch = frame[frame["source"] == "batch"].set_index("id")
    assert len(batch) == 2_500 and set(batch["model_version"]) == {"3"}
    assert batch.loc["batch-1", "prediction"] == "Gentoo"
    assert batch.loc["batch-1", "confidence"] == 0.75
    assert batch.loc["batch-0", "sex"] is None and pd.isna(batch.loc["batch-1", "body_mass_g"])
    assert batch["shadow_version"].isna().all()
    assert list(frame.loc[frame["source"] == "online", "id"]) == ["online0"]

    assert (
        backend.label_by_id({"batch-7": "Adelie", "batch-2400": "Gentoo", "online0": "Gentoo"}) == 3
    )
    labeled = backend.load(limit=10, labeled_only=True)
    assert labeled is not None
    assert dict(zip(labeled["id"], labeled["ground_truth"], strict=True)) == {
        "batch-7": "Adelie", "batch-2400": "Gentoo", "online0": "Gentoo",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda out: out.drop(columns="model_version"), r"needs the columns model_version"),
        (lambda out: out.drop(columns="confidence"), r"needs the columns confidence"),
        (lambda out: out.iloc[:3], r"got 4 input rows and 3 predictions"),
    ],
    ids=["no version", "no confidence", "row counts differ"],
)
def test_a_batch_save_refuses_what_it_cannot_store_and_writes_nothing(
    sagemaker_moto: Any, change: Any, message: str
) -> None:
    inputs, outputs = batch_frames(4)
    with pytest.raises(BackendError, match=message):
        Sagemaker(SETTINGS).save(inputs, change(outputs), source="batch")
    with pytest.raises(BackendError, match=r"source must be 'online' or 'batch', got 'nightly'"):
        Sagemaker(SETTINGS).save(inputs, outputs, source="nightly")
    assert capture_objects() == []
