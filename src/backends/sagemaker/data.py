"""The data side: invoking the endpoint, reading what it captured, writing ground truth.

Captures are read newest first from `data_capture_uri`, the shadow variant's answers
joined to the served ones by request; predictions made elsewhere (the batch scoring
pipeline) are saved there too, in the same format. Labels are written to and read from
`ground_truth_uri` in Model Monitor's format, a later record's label winning.
"""

from __future__ import annotations

import bisect
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from backends.aws import aws_errors, list_keys, read_text, write_text
from backends.base import BackendError, captured_frame, simulate_ground_truth
from backends.sagemaker.connection import Connection
from backends.sagemaker.formats import (
    BATCH,
    CONTENT_TYPE,
    SERVED,
    SHADOW,
    CapturedEvent,
    capture_key,
    capture_variant,
    encoded_capture_record,
    ground_truth_key,
    ground_truth_record,
    hour_prefix,
    join_key,
    merge_labels,
    newest_first,
    parse_capture_record,
    parse_ground_truth_record,
    variant_name,
)
from inference.capture import SMOKE, prediction_ids

# Rows per capture record of saved predictions: a request of the server's largest
# size, so a label rewrites at most this many labels of its record.
SAVED_ROWS_PER_RECORD = 1000
# Rows per S3 object of saved predictions (~6 MB with 10 features): a chunk task of
# the batch pipeline (100,000 rows) writes five, and a `load` of the newest rows reads
# one (a 100,000-row object took 6 s to read back for 100 rows, on a loaded machine).
SAVED_ROWS_PER_OBJECT = 20_000
# A shadow's capture of a request lands in a file of its own variant, written about
# when the served one is: files this much older than the oldest served file read are
# read too, so the rows at the edge of `limit` find their shadow answers.
SHADOW_LAG = timedelta(hours=1)
# A capture file named by time holds the predictions made between its neighbours' times
# in its directory (whether SageMaker names a file by its first record or by when it
# wrote it); this much more on each side allows for the clocks of the model server and
# of SageMaker's writer to differ.
CLOCK_SLACK_MS = 60_000
# A prediction id the servers and the batch pipeline give: a UUIDv7 as 32 hex digits,
# its first 48 bits the millisecond it was made.
_UUID7 = re.compile(r"[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}")

if TYPE_CHECKING:
    import pandas as pd


def invoke(
    aws: Connection, payload: list[dict[str, Any]], source: str = "online"
) -> dict[str, Any]:
    """Send rows through `sagemaker-runtime`; returns `{"predictions": [...]}`.

    A `source` other than "online" (a smoke test) starts the request's `InferenceId`,
    which SageMaker records with the capture: `load` and `label` then leave it out.
    """
    with aws_errors(f"Invoking endpoint {aws.endpoint}"):
        response = aws.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=aws.endpoint,
            ContentType=CONTENT_TYPE,
            Accept=CONTENT_TYPE,
            Body=json.dumps({"inputs": payload}),
            # Recorded in the capture of every variant the request reaches: what joins
            # the shadow's answer to the served one.
            InferenceId=_inference_id(source),
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


def _inference_id(source: str) -> str:
    return uuid.uuid4().hex if source == "online" else f"{source}-{uuid.uuid4().hex}"


def _is_smoke_test(event: CapturedEvent) -> bool:
    return (event.inference_id or "").startswith(f"{SMOKE}-")


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


def _read_events(
    aws: Connection, bucket: str, key: str, role: str, version: str | None
) -> list[CapturedEvent]:
    events = []
    for line in read_text(aws.s3, bucket, key).splitlines():
        event = parse_capture_record(line, version, role) if line.strip() else None
        if event is not None:
            events.append(event)
    return events


def _key_hour(key: str) -> str:
    """The `yyyy/mm/dd/hh` of a capture key."""
    return "/".join(key.split("/")[-5:-1])


@dataclass
class CaptureFiles:
    """The capture files of the endpoint: served and saved ones newest first, shadows."""

    bucket: str
    prefix: str
    keys: list[str]
    shadow_keys: list[str]
    variants: dict[str, tuple[str, str | None]]  # key -> (role, version)


def capture_files(aws: Connection) -> CaptureFiles:
    bucket, capture_prefix = aws.settings.capture_location
    prefix = join_key(capture_prefix, aws.endpoint) + "/"
    keys = [key for key in list_keys(aws.s3, bucket, prefix) if key.endswith(".jsonl")]
    variants = {
        key: capture_variant(key, capture_prefix, aws.endpoint) or (SERVED, None) for key in keys
    }
    return CaptureFiles(
        bucket,
        capture_prefix,
        newest_first(key for key in keys if variants[key][0] != SHADOW),
        [key for key in keys if variants[key][0] == SHADOW],
        variants,
    )


def labelled_events(
    aws: Connection, files: CaptureFiles, key: str, truth: dict[str, list[str | None]]
) -> list[CapturedEvent]:
    """The events of one capture file, each with its labels so far."""
    role, version = files.variants[key]
    events = _read_events(aws, files.bucket, key, role, version)
    for event in events:
        event.labels = merge_labels([None] * len(event.inputs), truth.get(event.event_id, []))
    return events


def captured_events(
    aws: Connection,
    limit: int | None = None,
    labeled_only: bool = False,
    shadows: bool = True,
    model_version: str | None = None,
) -> list[CapturedEvent]:
    """Captured requests, newest first, with their labels, until `limit` rows are found.

    Served and saved (batch) requests only, of `model_version` only if given, never a
    smoke test's; with `shadows`, each carries the shadow variant's capture of the same
    request, if there is one, as `shadow` (labels need not read them: one label serves
    both answers).
    """
    truth = ground_truth(aws)
    files = capture_files(aws)
    events: list[CapturedEvent] = []
    rows = 0
    oldest_hour = None
    for key in files.keys:
        if model_version is not None and files.variants[key][1] != str(model_version):
            continue
        found = [e for e in labelled_events(aws, files, key, truth) if not _is_smoke_test(e)]
        events.extend(found)
        oldest_hour = _key_hour(key)
        rows += sum(
            sum(label is not None for label in event.labels) if labeled_only else len(event.inputs)
            for event in found
        )
        if limit is not None and rows >= limit:
            break
    else:
        oldest_hour = None  # Every file was read: so is every shadow file.
    if shadows:
        _join_shadows(aws, files.bucket, files.prefix, events, files.shadow_keys, oldest_hour)
    events.sort(key=lambda event: event.inference_time, reverse=True)
    return events


def _join_shadows(
    aws: Connection,
    bucket: str,
    capture_prefix: str,
    events: list[CapturedEvent],
    shadow_keys: list[str],
    oldest_hour: str | None,
) -> None:
    """Attach to each served event the shadow's capture of the same request."""
    served = {event.request_key: event for event in events if event.role == SERVED}
    if not served or not shadow_keys:
        return
    if oldest_hour is not None:
        # Keys sort by time, so hours compare as text.
        oldest = datetime.strptime(oldest_hour, "%Y/%m/%d/%H").replace(tzinfo=UTC)
        earliest = hour_prefix(oldest - SHADOW_LAG)
        shadow_keys = [key for key in shadow_keys if _key_hour(key) >= earliest]
    for key in shadow_keys:
        _, version = capture_variant(key, capture_prefix, aws.endpoint) or (SHADOW, None)
        for shadow in _read_events(aws, bucket, key, SHADOW, version):
            event = served.get(shadow.request_key)
            if event is not None and len(shadow.outputs) == len(event.outputs):
                event.shadow = shadow


def load(
    aws: Connection, limit: int = 100, labeled_only: bool = False, model_version: str | None = None
) -> pd.DataFrame | None:
    """The newest captured predictions (same columns as the Local backend), or None."""
    rows: list[tuple[Any, ...]] = []
    for event in captured_events(aws, limit, labeled_only, model_version=model_version):
        source = "batch" if event.role == BATCH else "online"
        shadow = event.shadow
        for position, (inputs, output) in enumerate(zip(event.inputs, event.outputs, strict=True)):
            label = event.labels[position]
            if labeled_only and label is None:
                continue
            if limit is not None and len(rows) >= limit:
                # A saved object holds thousands of rows: encode only those returned.
                return captured_frame(rows) if rows else None
            answer = shadow.outputs[position] if shadow is not None else {}
            rows.append((
                event.row_id(position), event.inference_time, event.model_version,
                json.dumps(inputs), output.get("prediction"), output.get("confidence"), label,
                source, shadow.model_version if shadow is not None else None,
                answer.get("prediction"), answer.get("confidence"),
            ))  # fmt: skip
    return captured_frame(rows) if rows else None


def _json_arrays(frame: pd.DataFrame, size: int) -> list[str]:
    """The frame's rows as JSON arrays of records, `size` rows each; missing is null.

    pandas encodes in C: ~10x faster than `json.dumps` of `to_dict` rows at 100,000.
    """
    return [
        frame.iloc[start : start + size].to_json(
            orient="records", double_precision=15, date_format="iso", force_ascii=False
        )
        for start in range(0, len(frame), size)
    ]


def save(
    aws: Connection, model_input: pd.DataFrame, model_output: pd.DataFrame, source: str
) -> int:
    """Write predictions made outside the endpoint as SageMaker captures them; returns
    how many S3 objects were written.

    `source` "online" writes nothing: the endpoint captured those itself. "batch" rows
    go under the variant directory `batch-<model version>`, as JSON Lines capture
    records of up to SAVED_ROWS_PER_RECORD rows each (SAVED_ROWS_PER_OBJECT rows an
    object), each prediction under its `id`, so
    `load` and `label_by_id` treat them as they treat the endpoint's.

    Rows whose ids are prediction ids (UUIDv7) go to an object named after its first
    and last id, at the time of the first, with records named after their first id:
    saving the same rows again (a retried batch chunk) overwrites the object instead of
    adding one, and `label_by_id` reads only the objects whose id range holds an id.
    """
    if source not in ("online", "batch"):
        raise BackendError(f"source must be 'online' or 'batch', got {source!r}.")
    if source == "online" or len(model_output) == 0:
        return 0
    _check_saved_predictions(model_input, model_output)
    answers = _answers(model_output)
    inputs = model_input.reset_index(drop=True)
    versions = model_output["model_version"].astype(str).to_numpy()
    now = datetime.now(UTC)
    objects = 0
    for version in dict.fromkeys(versions):
        chosen = versions == version
        rows, outputs = inputs[chosen], answers[chosen]
        for start in range(0, len(rows), SAVED_ROWS_PER_OBJECT):
            stop = start + SAVED_ROWS_PER_OBJECT
            _write_capture_object(
                aws, version, now, rows.iloc[start:stop], outputs.iloc[start:stop]
            )
            objects += 1
    return objects


def _check_saved_predictions(model_input: pd.DataFrame, model_output: pd.DataFrame) -> None:
    """BackendError unless there is one prediction per row, each with its model version."""
    if len(model_input) != len(model_output):
        raise BackendError(
            f"save got {len(model_input)} input rows and {len(model_output)} predictions: "
            "pass one prediction per row."
        )
    missing = [name for name in ("prediction", "confidence") if name not in model_output]
    if "model_version" not in model_output or model_output["model_version"].isna().any():
        missing.append("model_version")
    if missing:
        raise BackendError(
            f"save needs the columns {', '.join(missing)} in model_output: SageMaker's "
            "capture layout records which model version answered each prediction."
        )


def _answers(model_output: pd.DataFrame) -> pd.DataFrame:
    """Each row's answer as a capture records it: prediction, confidence and id (a new
    one for a row without)."""
    import pandas as pd

    ids = (
        model_output["id"].astype(str)
        if "id" in model_output
        else pd.Series(prediction_ids(len(model_output)))
    )
    return pd.DataFrame({
        "prediction": model_output["prediction"].astype(str).to_numpy(),
        "confidence": model_output["confidence"].astype(float).to_numpy(),
        "id": ids.to_numpy(),
    })  # fmt: skip


def _write_capture_object(
    aws: Connection, version: str, now: datetime, rows: pd.DataFrame, answers: pd.DataFrame
) -> None:
    """One S3 object of capture records under `batch-<version>`, up to
    SAVED_ROWS_PER_RECORD rows a record; named after its ids when they are prediction
    ids (see `save`), else uniquely."""
    bucket, capture_prefix = aws.settings.capture_location
    ids = answers["id"].tolist()
    named = all(_UUID7.fullmatch(value) for value in ids)
    records = zip(
        _json_arrays(rows, SAVED_ROWS_PER_RECORD),
        _json_arrays(answers, SAVED_ROWS_PER_RECORD),
        ids[::SAVED_ROWS_PER_RECORD],
        strict=True,
    )
    lines = [
        encoded_capture_record(first if named else uuid.uuid4().hex, now, rows_json, answers_json)
        for rows_json, answers_json, first in records
    ]
    if named:
        when = datetime.fromtimestamp(_id_milliseconds(min(ids)) / 1000, UTC)
        name = f"{min(ids)}-{max(ids)}"
    else:
        when, name = now, uuid.uuid4().hex
    key = capture_key(capture_prefix, aws.endpoint, variant_name(BATCH, version), when, name)
    write_text(aws.s3, bucket, key, "\n".join(lines) + "\n")


def write_ground_truth(aws: Connection, labels: dict[str, list[str | None]]) -> None:
    """One JSON Lines file of ground-truth records under this hour's prefix."""
    bucket, prefix = aws.settings.truth_location
    key = ground_truth_key(prefix, datetime.now(UTC), uuid.uuid4().hex)
    text = "\n".join(ground_truth_record(event, values) for event, values in labels.items())
    write_text(aws.s3, bucket, key, text + "\n")


def label(aws: Connection, ground_truth_quality: float = 0.8) -> int:
    """Simulate labels for every captured row without one; write them to S3."""
    events = captured_events(aws, shadows=False)
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
    """Attach labels to captured rows by prediction id; return how many matched.

    Reads only the capture files that can hold the ids (`files_for_ids`), then, for
    ids not found there (a file named otherwise than assumed), the other files: a
    label is never lost for the speed. A file at a time, keeping only the events a
    label matches, so memory stays that of one file however much was captured (a
    million batch rows held at once took 1.4 GB).
    """
    known = ground_truth(aws)
    files = capture_files(aws)
    likely = files_for_ids(files.keys, truth)
    matched_events, matched = _match_labels(aws, files, likely, known, truth)
    if len(matched) < len(truth):
        read = set(likely)
        rest = [key for key in files.keys if key not in read]
        more_events, more = _match_labels(aws, files, rest, known, truth)
        matched_events += more_events
        matched.update(more)
    return _write_labels(aws, matched_events, matched)


def _match_labels(
    aws: Connection,
    files: CaptureFiles,
    keys: Iterable[str],
    known: dict[str, list[str | None]],
    truth: dict[str, str],
) -> tuple[list[CapturedEvent], dict[tuple[str, int], str]]:
    """The events of the files `keys` that `truth` labels, and the labels by (event, row)."""
    matched_events: list[CapturedEvent] = []
    matched: dict[tuple[str, int], str] = {}
    for key in keys:
        for event in labelled_events(aws, files, key, known):
            hits = {
                (event.event_id, position): truth[event.row_id(position)]
                for position in range(len(event.inputs))
                if event.row_id(position) in truth
            }
            if hits:
                matched_events.append(event)
                matched.update(hits)
    return matched_events, matched


# --- which capture files can hold given prediction ids -----------------------------------


def _id_milliseconds(row_id: str) -> int | None:
    """The millisecond a prediction id (UUIDv7, 32 hex digits) was made; None for
    another id."""
    return int(row_id[:12], 16) if _UUID7.fullmatch(row_id) else None


def _key_milliseconds(key: str) -> int | None:
    """The time in a capture key `.../yyyy/mm/dd/hh/<mm-ss-mmm>-<name>.jsonl`, in ms."""
    parts = key.split("/")
    try:
        hour = datetime.strptime("/".join(parts[-5:-1]), "%Y/%m/%d/%H").replace(tzinfo=UTC)
        minute, second, milli = (int(value) for value in parts[-1].split("-")[:3])
    except ValueError:
        return None
    return int(hour.timestamp()) * 1000 + (minute * 60 + second) * 1000 + milli


def _key_id_range(key: str) -> tuple[str, str] | None:
    """The first and last prediction id of a saved object named after them (`save`)."""
    fields = key.rsplit("/", 1)[-1].removesuffix(".jsonl").split("-")
    if len(fields) == 5 and all(_UUID7.fullmatch(value) for value in fields[3:]):
        return fields[3], fields[4]
    return None


def files_for_ids(keys: Sequence[str], ids: Iterable[str]) -> list[str]:
    """The capture files among `keys` (in their order) that can hold any of `ids`.

    Prediction ids begin with the millisecond they were made. An object the backend
    saved names its first and last id; a file SageMaker wrote is named by a time, and
    holds what was captured between its neighbours' times in its directory (give or
    take CLOCK_SLACK_MS). Every file, when an id is not a prediction id.
    """
    wanted = sorted(set(ids))
    moments = [_id_milliseconds(value) for value in wanted]
    if None in moments:
        return list(keys)
    moments = sorted(moments)
    chosen: set[str] = set()
    by_directory: dict[str, list[tuple[int, str]]] = {}
    for key in keys:
        id_range, moment = _key_id_range(key), _key_milliseconds(key)
        if id_range is not None:
            if _any_between(wanted, *id_range):
                chosen.add(key)
        elif moment is None:
            chosen.add(key)
        else:
            by_directory.setdefault("/".join(key.split("/")[:-5]), []).append((moment, key))
    for files in by_directory.values():
        files.sort()
        for index, (_, key) in enumerate(files):
            low = files[index - 1][0] - CLOCK_SLACK_MS if index > 0 else -1
            high = files[index + 1][0] + CLOCK_SLACK_MS if index + 1 < len(files) else 1 << 62
            if _any_between(moments, low, high):
                chosen.add(key)
    return [key for key in keys if key in chosen]


def _any_between(ordered: Sequence[Any], low: Any, high: Any) -> bool:
    """Whether the sorted `ordered` holds a value in [low, high]."""
    at = bisect.bisect_left(ordered, low)
    return at < len(ordered) and ordered[at] <= high


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
