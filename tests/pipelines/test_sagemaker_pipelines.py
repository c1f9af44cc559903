"""The pipelines with the SageMaker backend, end to end through `metaflow.Runner`, on moto.

`config/sagemaker.yml` is used as users use it: its `${BUCKET}`, `${ENDPOINT_NAME}` and
`${SAGEMAKER_ROLE}` come from the environment. Only the model name differs (the tiny
models of support/serving.py). moto answers `invoke_endpoint` with
results queued in advance and writes no capture files: the smoke test's answers are
queued, and captures are written to moto's S3 in SageMaker's format, as if the endpoint
had served them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
import yaml
from support.flows import FlowRequest, FlowResult
from support.paths import (
    DEPLOYMENT_FLOW,
    MONITORING_FLOW,
    PENGUINS_CSV,
    SAGEMAKER_CONFIG,
    TRAFFIC_FLOW,
)
from support.sagemaker_records import capture_key, capture_record
from support.serving import ServingModels

from backends.sagemaker import Sagemaker

BUCKET = "penguins-pipelines"
ENDPOINT = "penguins-pipelines"
ROWS_PER_REQUEST = 10
REQUESTS = 20
TRAFFIC_ROWS = 30


@dataclass
class SagemakerSetup:
    config: Path
    backend: Sagemaker
    models: ServingModels
    env: dict[str, str]


@pytest.fixture(scope="module")
def setup(
    moto_server: Any, session_root: Path, serving_models: ServingModels
) -> Iterator[SagemakerSetup]:
    """moto with the bucket, ECR repository and role a SageMaker account would have."""
    moto_server.reset()
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    boto3.client("ecr").create_repository(repositoryName="mlflow-pyfunc")
    role = boto3.client("iam").create_role(
        RoleName="sagemaker-pipelines", AssumeRolePolicyDocument=json.dumps({"Version": "1"})
    )["Role"]["Arn"]
    models = serving_models

    config = yaml.safe_load(SAGEMAKER_CONFIG.read_text())
    config["model"]["name"] = models.name
    path = session_root / "sagemaker-tests" / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))

    env = {"BUCKET": BUCKET, "ENDPOINT_NAME": ENDPOINT, "SAGEMAKER_ROLE": role}
    settings = {
        **config["backend"],
        "target": ENDPOINT,
        "data_capture_uri": f"s3://{BUCKET}/datastore",
        "ground_truth_uri": f"s3://{BUCKET}/ground-truth",
        "region": "us-east-1",
        "assume_role": role,
    }
    yield SagemakerSetup(path, Sagemaker(settings), models, env)


def write_production_captures(version: str) -> pd.DataFrame:
    """REQUESTS requests of ROWS_PER_REQUEST dataset rows, captured as SageMaker does."""
    data = (
        pd.read_csv(PENGUINS_CSV)
        .dropna()
        .sample(REQUESTS * ROWS_PER_REQUEST, replace=True, random_state=1)
    )
    features = data.drop(columns="species")
    start = datetime.now(UTC) - timedelta(minutes=30)
    lines = []
    for number in range(REQUESTS):
        chunk = slice(number * ROWS_PER_REQUEST, (number + 1) * ROWS_PER_REQUEST)
        rows = features.iloc[chunk].to_dict("records")
        predictions = [
            {"prediction": species, "confidence": 0.95, "id": f"r{number}-{i}"}
            for i, species in enumerate(data["species"].iloc[chunk])
        ]
        when = start + timedelta(seconds=number)
        lines.append(capture_record(f"event-{number}", when, rows, predictions))
    key = capture_key("datastore", ENDPOINT, version, start, "production")
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    return data


@pytest.fixture(scope="module")
def runs(setup: SagemakerSetup, moto_server: Any, flows_runner: Any) -> dict[str, FlowResult]:
    """Deploy (smoke test answered by moto) while labelling captures and while a run
    without ${BUCKET} fails at start; then monitor while sending traffic."""
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    smoke = [{"prediction": classes[i % 3], "confidence": 0.9, "id": f"s{i}"} for i in range(5)]
    moto_server.queue_sagemaker_results([{"predictions": smoke}])
    newest = setup.models.good[-1]
    write_production_captures(newest)

    config = str(setup.config)
    without_bucket = {name: value for name, value in setup.env.items() if name != "BUCKET"}
    results = flows_runner({
        "deploy": FlowRequest(DEPLOYMENT_FLOW, {"model_version": newest}, config, env=setup.env),
        "labels": FlowRequest(
            TRAFFIC_FLOW, {"mode": "labels", "ground_truth_quality": 0.9}, config, env=setup.env
        ),
        "unset": FlowRequest(TRAFFIC_FLOW, {"mode": "labels"}, config, env=without_bucket),
    })  # fmt: skip
    # moto answers invocations in queue order: traffic's are queued after the smoke test's.
    moto_server.queue_sagemaker_results(
        [{"predictions": smoke * 2}] * (TRAFFIC_ROWS // ROWS_PER_REQUEST)
    )
    traffic = {"mode": "traffic", "samples": TRAFFIC_ROWS, "batch_size": ROWS_PER_REQUEST}
    results |= flows_runner({
        "monitor": FlowRequest(MONITORING_FLOW, {"samples": 150}, config, env=setup.env),
        "traffic": FlowRequest(TRAFFIC_FLOW, traffic, config, env=setup.env),
    })  # fmt: skip
    return results


def test_deployment_creates_the_endpoint_and_promotes_the_version(
    runs: dict[str, FlowResult], setup: SagemakerSetup
) -> None:
    result = runs["deploy"]
    assert result.successful, result.describe()
    assert result.run["end"].task.data.deployed is True
    assert setup.backend.deployed_version() == setup.models.good[-1]
    config = setup.backend.aws.sagemaker.describe_endpoint_config(
        EndpointConfigName=setup.backend.describe_endpoint()["EndpointConfigName"]
    )
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/datastore"

    import mlflow

    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(setup.models.name, "champion")
    assert str(champion.version) == setup.models.good[-1]
    assert champion.tags["deployment_target"] == ENDPOINT


def test_traffic_mode_invokes_the_endpoint(runs: dict[str, FlowResult]) -> None:
    result = runs["traffic"]
    assert result.successful, result.describe()
    assert result.run["start"].task.data.predictions == TRAFFIC_ROWS


def test_labels_mode_writes_ground_truth_for_every_capture(
    runs: dict[str, FlowResult], setup: SagemakerSetup
) -> None:
    result = runs["labels"]
    assert result.successful, result.describe()
    assert result.run["start"].task.data.labeled == REQUESTS * ROWS_PER_REQUEST
    truth = setup.backend.ground_truth()
    assert len(truth) == REQUESTS
    assert all(len(labels) == ROWS_PER_REQUEST and None not in labels for labels in truth.values())


def test_monitoring_reads_the_endpoints_captures_and_labels(
    runs: dict[str, FlowResult], setup: SagemakerSetup
) -> None:
    result = runs["monitor"]
    assert result.successful, result.describe()
    start = result.run["start"].task.data
    assert start.monitored_version == setup.models.good[-1]
    assert start.rows == 150
    end = result.run["end"].task.data
    assert not [alert for alert in end.alerts if "drift" in alert.lower()], end.alerts


def test_an_unset_variable_stops_the_run_at_start_naming_it(runs: dict[str, FlowResult]) -> None:
    result = runs["unset"]
    assert not result.successful
    output = result.stderr + result.stdout
    assert "Backend backend.Sagemaker: The SageMaker settings use ${BUCKET}" in output
    assert "BUCKET is not set" in output
