"""The data side: invoking the endpoint, reading what it captured, writing ground truth.

Captures are read newest first from `data_capture_uri`; labels are written to and read
from `ground_truth_uri` in Model Monitor's format, a later record's label winning.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from backends.aws import aws_errors, list_keys, read_text, write_text
from backends.base import BackendError, captured_frame, simulate_ground_truth
from backends.sagemaker.connection import Connection
from backends.sagemaker.formats import (
    CONTENT_TYPE,
    CapturedEvent,
    ground_truth_key,
    ground_truth_record,
    join_key,
    merge_labels,
    newest_first,
    parse_capture_record,
    parse_ground_truth_record,
    variant_version,
)

if TYPE_CHECKING:
    import pandas as pd


def invoke(aws: Connection, payload: list[dict[str, Any]]) -> dict[str, Any]:
    """Send rows through `sagemaker-runtime`; returns `{"predictions": [...]}`."""
    with aws_errors(f"Invoking endpoint {aws.endpoint}"):
        response = aws.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=aws.endpoint,
            ContentType=CONTENT_TYPE,
            Accept=CONTENT_TYPE,
            Body=json.dumps({"inputs": payload}),
        )
        body = response["Body"].read()
    try:
        answer = json.loads(body)
    except ValueError:
        raise BackendError(
            f"Endpoint {aws.endpoint} answered with something that is not JSON: {body[:200]!r}"
        ) from None
    if isinstance(answer, list):  # Older MLflow containers answer with a bare list.
        answer = {"predictions": answer}
    return answer


def ground_truth(aws: Connection) -> dict[str, list[str | None]]:
    """Every event's labels in `ground_truth_uri`, later records winning."""
    bucket, prefix = aws.settings.truth_location
    labels: dict[str, list[str | None]] = {}
    for key in sorted(list_keys(aws.s3, bucket, f"{prefix}/" if prefix else "")):
        for line in read_text(aws.s3, bucket, key).splitlines():
            parsed = parse_ground_truth_record(line) if line.strip() else None
            if parsed is not None:
                event_id, event_labels = parsed
                labels[event_id] = merge_labels(labels.get(event_id, []), event_labels)
    return labels


def captured_events(
    aws: Connection, limit: int | None = None, labeled_only: bool = False
) -> list[CapturedEvent]:
    """Captured requests, newest first, with their labels, until `limit` rows are found."""
    truth = ground_truth(aws)
    bucket, capture_prefix = aws.settings.capture_location
    events: list[CapturedEvent] = []
    rows = 0
    prefix = join_key(capture_prefix, aws.endpoint) + "/"
    for key in newest_first(list_keys(aws.s3, bucket, prefix)):
        if not key.endswith(".jsonl"):
            continue
        version = variant_version(key, capture_prefix, aws.endpoint)
        found = []
        for line in read_text(aws.s3, bucket, key).splitlines():
            event = parse_capture_record(line, version) if line.strip() else None
            if event is None:
                continue
            event.labels = merge_labels([None] * len(event.inputs), truth.get(event.event_id, []))
            found.append(event)
        events.extend(found)
        rows += sum(
            sum(label is not None for label in event.labels) if labeled_only else len(event.inputs)
            for event in found
        )
        if limit is not None and rows >= limit:
            break
    events.sort(key=lambda event: event.inference_time, reverse=True)
    return events


def load(aws: Connection, limit: int = 100, labeled_only: bool = False) -> pd.DataFrame | None:
    """The newest captured predictions (same columns as the Local backend), or None."""
    rows = []
    for event in captured_events(aws, limit, labeled_only):
        for position, (inputs, output) in enumerate(zip(event.inputs, event.outputs, strict=True)):
            label = event.labels[position]
            if labeled_only and label is None:
                continue
            rows.append((
                event.row_id(position), event.inference_time, event.model_version,
                json.dumps(inputs), output.get("prediction"), output.get("confidence"), label,
            ))  # fmt: skip
    rows = rows[:limit] if limit is not None else rows
    return captured_frame(rows) if rows else None


def write_ground_truth(aws: Connection, labels: dict[str, list[str | None]]) -> None:
    """One JSON Lines file of ground-truth records under this hour's prefix."""
    bucket, prefix = aws.settings.truth_location
    key = ground_truth_key(prefix, datetime.now(UTC), uuid.uuid4().hex)
    text = "\n".join(ground_truth_record(event, values) for event, values in labels.items())
    write_text(aws.s3, bucket, key, text + "\n")


def label(aws: Connection, ground_truth_quality: float = 0.8) -> int:
    """Simulate labels for every captured row without one; write them to S3."""
    events = captured_events(aws)
    unlabeled = [
        ((event.event_id, position), str(event.outputs[position].get("prediction")))
        for event in events
        for position, value in enumerate(event.labels)
        if value is None
    ]
    if not unlabeled:
        return 0
    classes = sorted({str(out.get("prediction")) for event in events for out in event.outputs})
    simulated = simulate_ground_truth(unlabeled, classes, ground_truth_quality)  # type: ignore[arg-type]
    return _write_labels(aws, events, simulated)  # type: ignore[arg-type]


def label_by_id(aws: Connection, truth: dict[str, str]) -> int:
    """Attach labels to captured rows by prediction id; return how many matched."""
    events = captured_events(aws)
    by_id = {
        event.row_id(position): (event.event_id, position)
        for event in events
        for position in range(len(event.inputs))
    }
    matched = {by_id[id_]: value for id_, value in truth.items() if id_ in by_id}
    return _write_labels(aws, events, matched)


def _write_labels(
    aws: Connection, events: list[CapturedEvent], labels: dict[tuple[str, int], str]
) -> int:
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
    write_ground_truth(aws, records)
    return len(labels)
