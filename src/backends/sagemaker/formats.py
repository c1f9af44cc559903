"""SageMaker's data-capture and Model Monitor ground-truth formats, and their S3 layout.

Plain functions on text and keys: no AWS call, no boto3 import.

SageMaker writes each endpoint's captures as JSON Lines under
`<data_capture_uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<name>.jsonl`, one
directory per variant, shadow variants included. The backend names the variants after
their role and model version, so a capture's key says which version answered and how:
`version-<N>` serves (its answers are returned), `shadow-<N>` scores the same requests
unseen, and `batch-<N>` holds what the batch scoring pipeline saved, written by the
backend in the same format. The backend's `invoke` gives every request an
`InferenceId`, which SageMaker adds to the captured data of the request; a shadow's
answer is joined to the served one by it (by the event id for traffic without one).
Ground truth goes under `<ground_truth_uri>/yyyy/mm/dd/hh/`, as
Model Monitor reads it.
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
SHADOW_PREFIX = "shadow-"
BATCH_PREFIX = "batch-"
CONTENT_TYPE = "application/json"

# What each kind of variant directory holds, by its name's prefix.
SERVED, SHADOW, BATCH = "served", "shadow", "batch"
ROLE_PREFIXES = {SERVED: VARIANT_PREFIX, SHADOW: SHADOW_PREFIX, BATCH: BATCH_PREFIX}


@dataclass
class CapturedEvent:
    """One request SageMaker captured: its rows in, its predictions out."""

    event_id: str
    inference_time: float  # seconds since the epoch
    model_version: str | None
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    labels: list[str | None] = field(default_factory=list)
    # The caller's `InferenceId`, which SageMaker records for every variant the request
    # reached: the key that joins a shadow's answer to the served one.
    inference_id: str | None = None
    role: str = SERVED
    shadow: CapturedEvent | None = None  # the shadow variant's capture of this request

    @property
    def request_key(self) -> str:
        """What identifies the request across variants: its inference id, else event id."""
        return self.inference_id or self.event_id

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


def parse_capture_record(
    line: str, model_version: str | None = None, role: str = SERVED
) -> CapturedEvent | None:
    """One JSON Lines record of SageMaker data capture, or None if it is not a prediction.

    SageMaker writes `captureData.endpointInput/endpointOutput` (`data` as JSON text or
    base64) and `eventMetadata.eventId/inferenceTime` (and `inferenceId` when the caller
    gave one) per request.
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
    inference_id = metadata.get("inferenceId")
    return CapturedEvent(
        str(metadata["eventId"]),
        moment.timestamp(),
        model_version,
        inputs,
        outputs,
        inference_id=str(inference_id) if inference_id else None,
        role=role,
    )


def capture_time(when: datetime) -> str:
    """`inferenceTime` as SageMaker writes it: UTC, milliseconds, `Z`."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def capture_record(
    event_id: str,
    when: datetime,
    rows: list[dict[str, Any]],
    predictions: list[dict[str, Any]],
    inference_id: str | None = None,
) -> str:
    """One JSON Lines record of SageMaker data capture: a request and its answer.

    What SageMaker writes for each request to a capturing endpoint (JSON content types
    kept as text); the backend writes the same for the rows it saves itself.
    """
    return encoded_capture_record(
        event_id, when, json.dumps(rows), json.dumps(predictions), inference_id
    )


def encoded_capture_record(
    event_id: str,
    when: datetime,
    rows_json: str,
    predictions_json: str,
    inference_id: str | None = None,
) -> str:
    """`capture_record` of rows and predictions already encoded as JSON arrays."""
    metadata = {"eventId": event_id, "inferenceTime": capture_time(when)}
    if inference_id is not None:
        metadata["inferenceId"] = inference_id
    sections = {
        "endpointInput": ("INPUT", f'{{"inputs": {rows_json}}}'),
        "endpointOutput": ("OUTPUT", f'{{"predictions": {predictions_json}}}'),
    }
    return json.dumps(
        {
            "captureData": {
                name: {
                    "observedContentType": CONTENT_TYPE,
                    "mode": mode,
                    "data": payload,
                    "encoding": "JSON",
                }
                for name, (mode, payload) in sections.items()
            },
            "eventMetadata": metadata,
            "eventVersion": "0",
        }
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


def variant_name(role: str, version: str) -> str:
    """The variant (and capture directory) of `version` in `role`: `version-7`, `shadow-8`."""
    return f"{ROLE_PREFIXES[role]}{version}"


def parse_variant(name: str) -> tuple[str, str] | None:
    """(role, version) of a variant name this backend gave, else None."""
    for role, prefix in ROLE_PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return role, name[len(prefix) :]
    return None


def capture_variant(key: str, capture_prefix: str, endpoint: str) -> tuple[str, str] | None:
    """(role, version) of a capture key `<prefix>/<endpoint>/<variant>/...`, else None."""
    relative = key[len(capture_prefix) :].lstrip("/").split("/")
    if len(relative) > 1 and relative[0] == endpoint:
        return parse_variant(relative[1])
    return None


def variant_version(key: str, capture_prefix: str, endpoint: str) -> str | None:
    """The model version in a capture key `<prefix>/<endpoint>/<variant>/...`."""
    variant = capture_variant(key, capture_prefix, endpoint)
    return variant[1] if variant is not None else None


def capture_key(prefix: str, endpoint: str, variant: str, when: datetime, name: str) -> str:
    """Where SageMaker writes a capture file:
    `<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<name>.jsonl`."""
    moment = when.astimezone(UTC)
    file = f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{name}.jsonl"
    return join_key(prefix, endpoint, variant, hour_prefix(moment), file)


def ground_truth_key(prefix: str, when: datetime, name: str) -> str:
    """Where a file of ground-truth records goes: `<prefix>/yyyy/mm/dd/hh/<mm-ss>-<name>.jsonl`."""
    return join_key(prefix, hour_prefix(when), f"{when.astimezone(UTC):%M-%S}-{name}.jsonl")
