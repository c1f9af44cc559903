"""The SageMaker backend: serve from an Amazon SageMaker endpoint, monitor what it captures.

Selected with `--config project config/sagemaker.yml` (`backend.module: backend.Sagemaker`).
Settings under `backend:`:

- `target`: the endpoint name.
- `data-capture-uri`: where SageMaker writes every request and response (S3 prefix).
- `ground-truth-uri`: where labels go, in the format SageMaker Model Monitor reads.
- `region`: the AWS region.
- `assume-role` (optional): an IAM role ARN assumed for every AWS call, and the role
  SageMaker runs the model with unless `execution-role` says otherwise.
- `execution-role` (optional): the role SageMaker runs the model with.
- `image` (optional): the MLflow serving image; default `mlflow-pyfunc:<mlflow version>`
  from the account's ECR, as `mlflow sagemaker build-and-push-container` pushes it.
- `model-artifacts-uri` (optional): where model archives go; default `models/` in the
  data-capture bucket.
- `instance-type` (default ml.m5.large), `instance-count` (default 1),
  `wait-seconds` (longest wait for the endpoint to come up, default 1800).

Every resource the backend creates is named after the endpoint and tagged
`endpoint=<name>` and `model_version=<version>`; the variant is named `version-<N>`, so
each capture file's S3 path says which version answered. To stop paying for it:

    uv run python -m backends.sagemaker delete --config config/sagemaker.yml
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import re
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from backends.aws import (
    aws_errors,
    client_config,
    error_code,
    list_keys,
    read_text,
    session,
    split_s3_uri,
    write_text,
)
from backends.base import (
    Backend,
    BackendError,
    SettingsError,
    captured_frame,
    simulate_ground_truth,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

REQUIRED_SETTINGS = ("target", "data-capture-uri", "ground-truth-uri", "region")
VERSION_TAG = "model_version"
ENDPOINT_TAG = "endpoint"
VARIANT_PREFIX = "version-"
CONTENT_TYPE = "application/json"
DEFAULT_IMAGE_REPOSITORY = "mlflow-pyfunc"
# How SageMaker says that a resource does not exist (a ValidationException).
_MISSING = re.compile(r"could not find|not found|does not exist", re.IGNORECASE)
# SageMaker resource names: at most 63 letters, digits and inner hyphens.
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


# --- SageMaker's data-capture and ground-truth formats -------------------------------


@dataclass
class CapturedEvent:
    """One request SageMaker captured: its rows in, its predictions out."""

    event_id: str
    inference_time: float  # seconds since the epoch
    model_version: str | None
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    labels: list[str | None] = field(default_factory=list)

    def row_id(self, position: int) -> str:
        """The prediction's id: the one the model returned, else event id and position."""
        output = self.outputs[position] if position < len(self.outputs) else {}
        return str(output.get("id") or f"{self.event_id}-{position}")


def _decode(section: dict[str, Any]) -> Any:
    """The JSON payload of a capture section (`endpointInput`/`endpointOutput`)."""
    data = section.get("data", "")
    if section.get("encoding", "").upper() == "BASE64":
        data = base64.b64decode(data).decode("utf-8")
    return json.loads(data)


def _input_rows(payload: Any) -> list[dict[str, Any]]:
    """Rows of an MLflow scoring request, in any of the JSON shapes the server accepts."""
    if isinstance(payload, dict):
        for key in ("inputs", "dataframe_records", "instances"):
            if key in payload:
                payload = payload[key]
                break
        else:
            if "dataframe_split" in payload:
                split = payload["dataframe_split"]
                return [dict(zip(split["columns"], row, strict=True)) for row in split["data"]]
    if isinstance(payload, list) and all(isinstance(row, dict) for row in payload):
        return payload
    raise ValueError("the captured request holds no rows of named features")


def parse_capture_record(line: str, model_version: str | None = None) -> CapturedEvent | None:
    """One JSON Lines record of SageMaker data capture, or None if it is not a prediction.

    SageMaker writes `captureData.endpointInput/endpointOutput` (`data` as JSON text or
    base64) and `eventMetadata.eventId/inferenceTime` per request.
    """
    try:
        record = json.loads(line)
        capture = record["captureData"]
        metadata = record["eventMetadata"]
        inputs = _input_rows(_decode(capture["endpointInput"]))
        outputs = _decode(capture["endpointOutput"])
        outputs = outputs.get("predictions", []) if isinstance(outputs, dict) else outputs
        moment = datetime.fromisoformat(metadata["inferenceTime"].replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        logger.warning("Skipping a capture record that is not a prediction (%s).", error)
        return None
    if not isinstance(outputs, list) or len(outputs) != len(inputs):
        logger.warning("Skipping capture %s: rows and predictions differ.", metadata["eventId"])
        return None
    return CapturedEvent(
        str(metadata["eventId"]), moment.timestamp(), model_version, inputs, outputs
    )


def capture_record(
    event_id: str, when: datetime, rows: list[dict[str, Any]], predictions: list[dict[str, Any]]
) -> str:
    """A capture record as SageMaker writes it (used to simulate captures in tests)."""
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": CONTENT_TYPE,
                    "mode": "INPUT",
                    "data": json.dumps({"inputs": rows}),
                    "encoding": "JSON",
                },
                "endpointOutput": {
                    "observedContentType": CONTENT_TYPE,
                    "mode": "OUTPUT",
                    "data": json.dumps({"predictions": predictions}),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {
                "eventId": event_id,
                "inferenceTime": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            },
            "eventVersion": "0",
        }
    )


def capture_key(prefix: str, endpoint: str, version: str, when: datetime, name: str) -> str:
    """Where SageMaker writes a capture file (used to simulate captures in tests):
    `<prefix>/<endpoint>/version-<N>/yyyy/mm/dd/hh/<mm-ss-mmm>-<name>.jsonl`."""
    moment = when.astimezone(UTC)
    file = f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{name}.jsonl"
    parts = (prefix, endpoint, f"{VARIANT_PREFIX}{version}", hour_prefix(moment), file)
    return "/".join(part for part in parts if part)


def ground_truth_record(event_id: str, labels: list[str | None]) -> str:
    """A Model Monitor ground-truth record: the labels of one event's rows, in order.

    `groundTruthData.data` is a JSON array with one label (or null) per row of the request.
    """
    return json.dumps(
        {
            "groundTruthData": {"data": json.dumps(labels), "encoding": "JSON"},
            "eventMetadata": {"eventId": event_id},
            "eventVersion": "0",
        }
    )


def parse_ground_truth_record(line: str) -> tuple[str, list[str | None]] | None:
    try:
        record = json.loads(line)
        labels = json.loads(record["groundTruthData"]["data"])
        event_id = str(record["eventMetadata"]["eventId"])
    except (KeyError, TypeError, ValueError):
        logger.warning("Skipping a ground-truth record in an unknown format.")
        return None
    return event_id, labels if isinstance(labels, list) else [labels]


def merge_labels(older: list[str | None], newer: list[str | None]) -> list[str | None]:
    """Labels of one event from two records: a newer label wins, a null keeps the older."""
    size = max(len(older), len(newer))
    older, newer = older + [None] * (size - len(older)), newer + [None] * (size - len(newer))
    return [new if new is not None else old for old, new in zip(older, newer, strict=True)]


def hour_prefix(when: datetime) -> str:
    """`yyyy/mm/dd/hh`: how SageMaker partitions captures and Model Monitor ground truth."""
    return when.astimezone(UTC).strftime("%Y/%m/%d/%H")


def newest_first(keys: Iterable[str]) -> list[str]:
    """Capture keys sorted by their `yyyy/mm/dd/hh/<file>` tail, newest first.

    The tail orders files of every variant by time: file names start with the minute.
    """
    return sorted(keys, key=lambda key: key.split("/")[-5:], reverse=True)


def variant_version(key: str, capture_prefix: str, endpoint: str) -> str | None:
    """The model version in a capture key `<prefix>/<endpoint>/version-<N>/...`."""
    relative = key[len(capture_prefix) :].lstrip("/").split("/")
    if len(relative) > 1 and relative[0] == endpoint and relative[1].startswith(VARIANT_PREFIX):
        return relative[1][len(VARIANT_PREFIX) :]
    return None


def resource_name(endpoint: str, version: str, stamp: str) -> str:
    """A SageMaker model or endpoint-config name: endpoint, version and time, <= 63 chars."""
    suffix = f"-v{version}-{stamp}"
    return endpoint[: 63 - len(suffix)].rstrip("-") + suffix


def time_stamp() -> str:
    """UTC time to the second: what tells apart the resources of successive deployments."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime())


# --- The backend ---------------------------------------------------------------------


class Sagemaker(Backend):
    """Deploy to a SageMaker endpoint; read what it captured from S3. See the module doc."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        from common.config import unexpanded_placeholders

        super().__init__(config)
        missing = sorted(set(unexpanded_placeholders(self.config)))
        if missing:
            raise SettingsError(
                f"The SageMaker settings use {', '.join('${' + n + '}' for n in missing)}, "
                f"but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. "
                f"Export {'it' if len(missing) == 1 else 'them'} (e.g. `export "
                f"{missing[0]}=...`) or write the value into the config file."
            )
        absent = [key for key in REQUIRED_SETTINGS if not self.config.get(key)]
        if absent:
            raise SettingsError(
                f"The SageMaker backend needs `backend.{absent[0]}` in the config "
                f"(missing: {', '.join(absent)}); see config/sagemaker.yml."
            )
        self.endpoint = str(self.config["target"])
        if not _NAME.match(self.endpoint):
            raise SettingsError(
                f"`backend.target` {self.endpoint!r} is not a valid endpoint name: up to 63 "
                "letters, digits and hyphens, starting with a letter or digit."
            )
        self.region = str(self.config["region"])
        self.assume_role = self.config.get("assume-role") or None
        self.capture_bucket, self.capture_prefix = split_s3_uri(self.config["data-capture-uri"])
        self.truth_bucket, self.truth_prefix = split_s3_uri(self.config["ground-truth-uri"])
        self.artifacts_bucket, self.artifacts_prefix = split_s3_uri(
            self.config.get("model-artifacts-uri") or f"s3://{self.capture_bucket}/models"
        )
        self.instance_type = str(self.config.get("instance-type", "ml.m5.large"))
        self.instance_count = self._positive_integer("instance-count", 1)
        self.wait_seconds = self._positive_integer("wait-seconds", 1800)
        self._session: Any = None
        self._clients: dict[str, Any] = {}

    def _positive_integer(self, key: str, default: int) -> int:
        value = self.config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SettingsError(f"`backend.{key}` must be a positive integer, got {value!r}.")
        return value

    # AWS clients are made on first use: building the backend costs nothing.
    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self._session is None:
                self._session = session(self.region, self.assume_role, f"{self.endpoint}-backend")
            self._clients[service] = self._session.client(service, config=client_config())
        return self._clients[service]

    @property
    def sagemaker(self) -> Any:
        return self.client("sagemaker")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    # --- what is deployed ---

    def describe_endpoint(self) -> dict[str, Any] | None:
        """The endpoint's description, or None when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            return self.sagemaker.describe_endpoint(EndpointName=self.endpoint)
        except ClientError as error:
            if error_code(error) == "ValidationException" and _MISSING.search(str(error)):
                return None
            with aws_errors(f"Describing endpoint {self.endpoint}"):
                raise

    def _config_models(self, config_name: str) -> list[str]:
        with aws_errors(f"Describing endpoint config {config_name}"):
            config = self.sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        return [variant["ModelName"] for variant in config["ProductionVariants"]]

    def _tags(self, arn: str) -> dict[str, str]:
        with aws_errors(f"Reading the tags of {arn}"):
            tags = self.sagemaker.list_tags(ResourceArn=arn).get("Tags", [])
        return {tag["Key"]: tag["Value"] for tag in tags}

    def deployed_version(self) -> str | None:
        """The `model_version` tag of the model behind the endpoint, if it is in service."""
        endpoint = self.describe_endpoint()
        if endpoint is None or endpoint["EndpointStatus"] not in ("InService", "Updating"):
            return None
        for model_name in self._config_models(endpoint["EndpointConfigName"]):
            with aws_errors(f"Describing model {model_name}"):
                arn = self.sagemaker.describe_model(ModelName=model_name)["ModelArn"]
            version = self._tags(arn).get(VERSION_TAG)
            if version is not None:
                return version
        return None

    # --- deploying ---

    def deploy(self, model_uri: str, model_version: str) -> bool:
        """Serve `model_uri` at the endpoint, capturing every request and response.

        Creates the endpoint when missing; does nothing when it already serves this
        version; otherwise a blue/green update to a new endpoint config, after which the
        config and model it replaced are deleted.
        """
        version = str(model_version)
        endpoint = self.describe_endpoint()
        if endpoint is not None and self.deployed_version() == version:
            logger.info(
                "Endpoint %s already serves version %s: nothing to do.", self.endpoint, version
            )
            return False
        if endpoint is not None and endpoint["EndpointStatus"] not in ("InService", "Failed"):
            raise BackendError(
                f"Endpoint {self.endpoint} is {endpoint['EndpointStatus']}: wait until it is "
                "InService (or Failed) and deploy again."
            )
        replaced_config = endpoint["EndpointConfigName"] if endpoint is not None else None
        if endpoint is not None and endpoint["EndpointStatus"] == "Failed":
            # SageMaker cannot update a failed endpoint: it is replaced.
            logger.warning("Endpoint %s has failed: replacing it.", self.endpoint)
            self.delete_endpoint()
            endpoint = None

        name = resource_name(self.endpoint, version, time_stamp())
        model_data = self.upload_model(model_uri, version)
        self.create_model(name, version, model_data)
        try:
            self.create_endpoint_config(name, version)
            if endpoint is None:
                self.create_endpoint(name, version)
            else:
                self.update_endpoint(name)
        except BackendError:
            self.delete_resources(models=[name], configs=[name], missing_ok=True)
            raise
        if replaced_config is not None:
            self.delete_resources(
                models=self._config_models(replaced_config),
                configs=[replaced_config],
                missing_ok=True,
            )
        logger.info("Endpoint %s serves version %s.", self.endpoint, version)
        return True

    def upload_model(self, model_uri: str, version: str) -> str:
        """Package the MLflow model as SageMaker wants it (model.tar.gz) and upload it."""
        import mlflow

        key = "/".join(
            part for part in (self.artifacts_prefix, self.endpoint, version, "model.tar.gz") if part
        )
        with tempfile.TemporaryDirectory() as directory:
            local = mlflow.artifacts.download_artifacts(model_uri, dst_path=directory)
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w:gz") as tar:
                for name in sorted(os.listdir(local)):
                    tar.add(os.path.join(local, name), arcname=name)
        with aws_errors(f"Uploading the model to s3://{self.artifacts_bucket}/{key}"):
            self.s3.put_object(Bucket=self.artifacts_bucket, Key=key, Body=archive.getvalue())
        return f"s3://{self.artifacts_bucket}/{key}"

    def _tag_list(self, version: str) -> list[dict[str, str]]:
        return [
            {"Key": ENDPOINT_TAG, "Value": self.endpoint},
            {"Key": VERSION_TAG, "Value": version},
        ]

    def execution_role(self) -> str:
        """The role SageMaker runs the model as: configured, assumed, or the caller's own."""
        role = self.config.get("execution-role") or self.assume_role
        if role:
            return str(role)
        with aws_errors("Finding the caller's IAM identity"):
            arn = self.client("sts").get_caller_identity()["Arn"]
        match = re.match(r"arn:aws:sts::(\d+):assumed-role/([^/]+)/", arn)
        if match:
            return f"arn:aws:iam::{match.group(1)}:role/{match.group(2)}"
        raise BackendError(
            f"SageMaker needs an IAM role to run the model, and the caller {arn} is not a "
            "role. Set `backend.execution-role` (or `backend.assume-role`) in the config."
        )

    def image(self) -> str:
        """The serving image: configured, or MLflow's `mlflow-pyfunc` in this account's ECR."""
        import mlflow

        image = self.config.get("image") or os.environ.get("MLFLOW_SAGEMAKER_DEPLOY_IMG_URL")
        if image:
            return str(image)
        from botocore.exceptions import ClientError

        try:
            repository = self.client("ecr").describe_repositories(
                repositoryNames=[DEFAULT_IMAGE_REPOSITORY]
            )["repositories"][0]
        except ClientError as error:
            if error_code(error) != "RepositoryNotFoundException":
                with aws_errors("Looking up the serving image in ECR"):
                    raise
            raise BackendError(
                f"No serving image: ECR has no `{DEFAULT_IMAGE_REPOSITORY}` repository in "
                f"{self.region}. Push MLflow's with `uv run mlflow sagemaker "
                "build-and-push-container` (needs Docker), or set `backend.image`."
            ) from None
        return f"{repository['repositoryUri']}:{mlflow.__version__}"

    def create_model(self, name: str, version: str, model_data: str) -> None:
        container = {
            "Image": self.image(),
            "ModelDataUrl": model_data,
            "Environment": {
                "MLFLOW_DEPLOYMENT_FLAVOR_NAME": "python_function",
                "SERVING_MODEL_VERSION": version,
            },
        }
        with aws_errors(f"Creating SageMaker model {name}"):
            self.sagemaker.create_model(
                ModelName=name,
                PrimaryContainer=container,
                ExecutionRoleArn=self.execution_role(),
                Tags=self._tag_list(version),
            )

    def data_capture_config(self) -> dict[str, Any]:
        """Capture every request and response, as JSON, under `data-capture-uri`."""
        return {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": self.config["data-capture-uri"],
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": [CONTENT_TYPE]},
        }

    def create_endpoint_config(self, name: str, version: str) -> None:
        with aws_errors(f"Creating endpoint config {name}"):
            self.sagemaker.create_endpoint_config(
                EndpointConfigName=name,
                ProductionVariants=[
                    {
                        "VariantName": f"{VARIANT_PREFIX}{version}",
                        "ModelName": name,
                        "InitialInstanceCount": self.instance_count,
                        "InstanceType": self.instance_type,
                        "InitialVariantWeight": 1.0,
                    }
                ],
                DataCaptureConfig=self.data_capture_config(),
                Tags=self._tag_list(version),
            )

    def create_endpoint(self, config_name: str, version: str) -> None:
        with aws_errors(f"Creating endpoint {self.endpoint}"):
            self.sagemaker.create_endpoint(
                EndpointName=self.endpoint,
                EndpointConfigName=config_name,
                Tags=[{"Key": ENDPOINT_TAG, "Value": self.endpoint}],
            )
        self.wait_in_service()

    def update_endpoint(self, config_name: str) -> None:
        """Blue/green: the new fleet comes up beside the old, then takes all the traffic.

        When the new fleet fails, SageMaker keeps the old one and the endpoint returns to
        InService on the old config: only the config in service tells success apart.
        """
        with aws_errors(f"Updating endpoint {self.endpoint}"):
            self.sagemaker.update_endpoint(
                EndpointName=self.endpoint,
                EndpointConfigName=config_name,
                DeploymentConfig={
                    "BlueGreenUpdatePolicy": {
                        "TrafficRoutingConfiguration": {
                            "Type": "ALL_AT_ONCE",
                            "WaitIntervalInSeconds": 0,
                        },
                        "TerminationWaitInSeconds": 0,
                        # SageMaker accepts 600 s to 8 h.
                        "MaximumExecutionTimeoutInSeconds": min(max(self.wait_seconds, 600), 28800),
                    }
                },
            )
        self.wait_in_service()
        endpoint = self.describe_endpoint() or {}
        if endpoint.get("EndpointConfigName") != config_name:
            raise BackendError(
                f"Updating endpoint {self.endpoint} failed and SageMaker kept the previous "
                f"version serving: {endpoint.get('FailureReason', 'no reason given')}. Its "
                f"CloudWatch logs are under /aws/sagemaker/Endpoints/{self.endpoint}."
            )

    def wait_in_service(self) -> None:
        """Wait until the endpoint is InService; say why when it fails."""
        from botocore.exceptions import WaiterError

        delay = 15
        try:
            self.sagemaker.get_waiter("endpoint_in_service").wait(
                EndpointName=self.endpoint,
                WaiterConfig={"Delay": delay, "MaxAttempts": max(1, self.wait_seconds // delay)},
            )
        except WaiterError:
            endpoint = self.describe_endpoint() or {}
            raise BackendError(
                f"Endpoint {self.endpoint} did not come into service "
                f"(status {endpoint.get('EndpointStatus', 'missing')}): "
                f"{endpoint.get('FailureReason', 'no reason given')}. Its CloudWatch logs "
                f"are under /aws/sagemaker/Endpoints/{self.endpoint}."
            ) from None

    # --- stopping ---

    def owned_resources(self) -> tuple[list[str], list[str]]:
        """(models, endpoint configs) tagged as created for this endpoint."""
        found: dict[str, list[str]] = {"models": [], "configs": []}
        listings = (
            ("models", "list_models", "Models", "ModelName", "ModelArn"),
            ("configs", "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName",
             "EndpointConfigArn"),
        )  # fmt: skip
        for kind, operation, items, name_key, arn_key in listings:
            with aws_errors(f"Listing SageMaker {kind}"):
                pages = self.sagemaker.get_paginator(operation).paginate(NameContains=self.endpoint)
                candidates = [item for page in pages for item in page[items]]
            for item in candidates:
                if self._tags(item[arn_key]).get(ENDPOINT_TAG) == self.endpoint:
                    found[kind].append(item[name_key])
        return found["models"], found["configs"]

    def delete_resources(
        self, models: Iterable[str] = (), configs: Iterable[str] = (), missing_ok: bool = False
    ) -> None:
        from botocore.exceptions import ClientError

        calls = [("delete_endpoint_config", "EndpointConfigName", name) for name in configs]
        calls += [("delete_model", "ModelName", name) for name in models]
        for operation, argument, name in calls:
            try:
                getattr(self.sagemaker, operation)(**{argument: name})
                logger.info("Deleted %s.", name)
            except ClientError as error:
                if not (missing_ok and error_code(error) == "ValidationException"):
                    with aws_errors(f"Deleting {name}"):
                        raise

    def delete_endpoint(self) -> None:
        """Delete the endpoint and wait until it is gone (its instances stop billing)."""
        with aws_errors(f"Deleting endpoint {self.endpoint}"):
            self.sagemaker.delete_endpoint(EndpointName=self.endpoint)
            self.sagemaker.get_waiter("endpoint_deleted").wait(
                EndpointName=self.endpoint, WaiterConfig={"Delay": 10, "MaxAttempts": 60}
            )
        logger.info("Deleted endpoint %s.", self.endpoint)

    def stop(self) -> None:
        """Delete the endpoint, its configs, models and model archives (the billed parts).

        Captured data and ground truth stay in S3: they are the monitoring history.
        """
        if self.describe_endpoint() is not None:
            self.delete_endpoint()
        models, configs = self.owned_resources()
        self.delete_resources(models, configs, missing_ok=True)
        prefix = "/".join(part for part in (self.artifacts_prefix, self.endpoint) if part) + "/"
        for key in list_keys(self.s3, self.artifacts_bucket, prefix):
            with aws_errors(f"Deleting s3://{self.artifacts_bucket}/{key}"):
                self.s3.delete_object(Bucket=self.artifacts_bucket, Key=key)

    # --- predictions ---

    def invoke(self, payload: list[dict[str, Any]]) -> dict[str, Any]:
        """Send rows through `sagemaker-runtime`; returns `{"predictions": [...]}`."""
        with aws_errors(f"Invoking endpoint {self.endpoint}"):
            response = self.client("sagemaker-runtime").invoke_endpoint(
                EndpointName=self.endpoint,
                ContentType=CONTENT_TYPE,
                Accept=CONTENT_TYPE,
                Body=json.dumps({"inputs": payload}),
            )
            body = response["Body"].read()
        try:
            answer = json.loads(body)
        except ValueError:
            raise BackendError(
                f"Endpoint {self.endpoint} answered with something that is not JSON: {body[:200]!r}"
            ) from None
        if isinstance(answer, list):  # Older MLflow containers answer with a bare list.
            answer = {"predictions": answer}
        return answer

    def save(self, model_input: pd.DataFrame, model_output: pd.DataFrame) -> None:
        """Nothing to do: the endpoint's data capture already stores every prediction."""

    def captured_events(
        self, limit: int | None = None, labeled_only: bool = False
    ) -> list[CapturedEvent]:
        """Captured requests, newest first, with their labels, until `limit` rows are found."""
        truth = self.ground_truth()
        events: list[CapturedEvent] = []
        rows = 0
        prefix = "/".join(part for part in (self.capture_prefix, self.endpoint) if part) + "/"
        for key in newest_first(list_keys(self.s3, self.capture_bucket, prefix)):
            if not key.endswith(".jsonl"):
                continue
            version = variant_version(key, self.capture_prefix, self.endpoint)
            found = []
            for line in read_text(self.s3, self.capture_bucket, key).splitlines():
                event = parse_capture_record(line, version) if line.strip() else None
                if event is None:
                    continue
                event.labels = merge_labels(
                    [None] * len(event.inputs), truth.get(event.event_id, [])
                )
                found.append(event)
            events.extend(found)
            rows += sum(
                sum(label is not None for label in event.labels)
                if labeled_only
                else len(event.inputs)
                for event in found
            )
            if limit is not None and rows >= limit:
                break
        events.sort(key=lambda event: event.inference_time, reverse=True)
        return events

    def ground_truth(self) -> dict[str, list[str | None]]:
        """Every event's labels in `ground-truth-uri`, later records winning."""
        labels: dict[str, list[str | None]] = {}
        prefix = f"{self.truth_prefix}/" if self.truth_prefix else ""
        for key in sorted(list_keys(self.s3, self.truth_bucket, prefix)):
            for line in read_text(self.s3, self.truth_bucket, key).splitlines():
                parsed = parse_ground_truth_record(line) if line.strip() else None
                if parsed is not None:
                    event_id, event_labels = parsed
                    labels[event_id] = merge_labels(labels.get(event_id, []), event_labels)
        return labels

    def load(self, limit: int = 100, labeled_only: bool = False) -> pd.DataFrame | None:
        """The newest captured predictions (same columns as the Local backend), or None."""
        rows = []
        for event in self.captured_events(limit, labeled_only):
            for position, (inputs, output) in enumerate(
                zip(event.inputs, event.outputs, strict=True)
            ):
                label = event.labels[position]
                if labeled_only and label is None:
                    continue
                rows.append((
                    event.row_id(position), event.inference_time, event.model_version,
                    json.dumps(inputs), output.get("prediction"), output.get("confidence"), label,
                ))  # fmt: skip
        rows = rows[:limit] if limit is not None else rows
        return captured_frame(rows) if rows else None

    def write_ground_truth(self, labels: dict[str, list[str | None]]) -> None:
        """One JSON Lines file of ground-truth records under this hour's prefix."""
        now = datetime.now(UTC)
        key = "/".join(
            part
            for part in (
                self.truth_prefix,
                hour_prefix(now),
                f"{now:%M-%S}-{uuid.uuid4().hex}.jsonl",
            )
            if part
        )
        text = "\n".join(ground_truth_record(event, values) for event, values in labels.items())
        write_text(self.s3, self.truth_bucket, key, text + "\n")

    def label(self, ground_truth_quality: float = 0.8) -> int:
        """Simulate labels for every captured row without one; write them to S3."""
        events = self.captured_events()
        unlabeled = [
            ((event.event_id, position), str(event.outputs[position].get("prediction")))
            for event in events
            for position, label in enumerate(event.labels)
            if label is None
        ]
        if not unlabeled:
            return 0
        classes = sorted({str(out.get("prediction")) for event in events for out in event.outputs})
        simulated = simulate_ground_truth(unlabeled, classes, ground_truth_quality)  # type: ignore[arg-type]
        return self._write_labels(events, simulated)

    def label_by_id(self, ground_truth: dict[str, str]) -> int:
        """Attach labels to captured rows by prediction id; return how many matched."""
        events = self.captured_events()
        by_id = {
            event.row_id(position): (event.event_id, position)
            for event in events
            for position in range(len(event.inputs))
        }
        matched = {by_id[id_]: label for id_, label in ground_truth.items() if id_ in by_id}
        return self._write_labels(events, matched)

    def _write_labels(self, events: list[CapturedEvent], labels: dict[tuple[str, int], str]) -> int:
        """Write the events that got new labels, each with all its labels so far."""
        if not labels:
            return 0
        records = {}
        for event in events:
            updated = list(event.labels)
            for position in range(len(updated)):
                if (event.event_id, position) in labels:
                    updated[position] = labels[(event.event_id, position)]
            if updated != event.labels:
                records[event.event_id] = updated
        self.write_ground_truth(records)
        return len(labels)


# --- Command line: the cost guard ----------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`status` or `delete` the endpoint named by a project config."""
    import argparse

    from common.config import ConfigurationError, load_project_configuration

    parser = argparse.ArgumentParser(
        prog="python -m backends.sagemaker",
        description="Show, or delete with everything created for it, the SageMaker endpoint.",
    )
    parser.add_argument("command", choices=["status", "delete"])
    parser.add_argument("--config", default="config/sagemaker.yml", help="project config file")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = load_project_configuration(arguments.config)["backend"]
        backend = Sagemaker(settings)
        if arguments.command == "delete":
            backend.stop()
            print(f"Deleted endpoint {backend.endpoint} and the models and configs made for it.")
            return 0
        endpoint = backend.describe_endpoint()
        if endpoint is None:
            print(f"Endpoint {backend.endpoint} does not exist (nothing is billed for it).")
            return 1
        print(
            f"Endpoint {backend.endpoint}: {endpoint['EndpointStatus']}, model version "
            f"{backend.deployed_version()}, {backend.instance_count} x {backend.instance_type}."
        )
        return 0
    except (BackendError, ConfigurationError, OSError) as error:
        print(f"error: {error}")
        return 2


if __name__ == "__main__":
    import sys

    sys.exit(main())
