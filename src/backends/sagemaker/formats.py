"""SageMaker's data-capture and Model Monitor ground-truth formats, and their S3 layout.

Plain functions on text and keys: no AWS call, no boto3 import.

SageMaker writes each endpoint's captures as JSON Lines under
`<data_capture_uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<name>.jsonl`; the
backend names each variant `version-<N>`, so a capture's key says which model version
answered. Ground truth goes under `<ground_truth_uri>/yyyy/mm/dd/hh/`, as Model Monitor
reads it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

VARIANT_PREFIX = "version-"
CONTENT_TYPE = "application/json"


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


# --- S3 layout -----------------------------------------------------------------------


def join_key(*parts: str) -> str:
    """An S3 key from its parts, skipping empty ones (a bucket-root prefix is "")."""
    return "/".join(part for part in parts if part)


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


def ground_truth_key(prefix: str, when: datetime, name: str) -> str:
    """Where a file of ground-truth records goes: `<prefix>/yyyy/mm/dd/hh/<mm-ss>-<name>.jsonl`."""
    return join_key(prefix, hour_prefix(when), f"{when.astimezone(UTC):%M-%S}-{name}.jsonl")
