"""Tests for backends.sagemaker.formats: SageMaker's capture and ground-truth records and
their S3 layout, as plain functions."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from support.sagemaker_records import capture_key, capture_record

from backends.sagemaker.formats import (
    BATCH,
    SERVED,
    SHADOW,
    capture_variant,
    ground_truth_record,
    hour_prefix,
    merge_labels,
    newest_first,
    parse_capture_record,
    parse_ground_truth_record,
    parse_variant,
    variant_name,
    variant_version,
)

ROWS = [
    {"island": "Biscoe", "flipper_length_mm": 210.0},
    {"island": "Dream", "flipper_length_mm": 190},
]


PREDICTIONS = [
    {"prediction": "Gentoo", "confidence": 0.9, "id": "a1"},
    {"prediction": "Chinstrap", "confidence": 0.8, "id": "a2"},
]


WHEN = datetime(2026, 11, 28, 4, 5, 6, 789000, tzinfo=UTC)


def test_a_capture_record_round_trips() -> None:
    event = parse_capture_record(capture_record("event-1", WHEN, ROWS, PREDICTIONS), "3")
    assert event is not None
    assert (event.event_id, event.model_version) == ("event-1", "3")
    assert event.inputs == ROWS and event.outputs == PREDICTIONS
    assert event.inference_time == pytest.approx(WHEN.timestamp())
    assert [event.row_id(0), event.row_id(1)] == ["a1", "a2"]


def test_base64_captures_and_other_request_shapes_are_read() -> None:
    """SageMaker base64-encodes content types it is not told are JSON."""
    record = json.loads(capture_record("e", WHEN, ROWS, PREDICTIONS))
    split = {"dataframe_split": {"columns": ["island"], "data": [["Biscoe"], ["Dream"]]}}
    section = record["captureData"]["endpointInput"]
    section["data"] = base64.b64encode(json.dumps(split).encode()).decode()
    section["encoding"] = "BASE64"
    event = parse_capture_record(json.dumps(record))
    assert event is not None and event.inputs == [{"island": "Biscoe"}, {"island": "Dream"}]


def test_rows_without_model_ids_are_named_by_event_and_position() -> None:
    predictions = [{"prediction": "Adelie", "confidence": 0.7}]
    event = parse_capture_record(capture_record("e9", WHEN, ROWS[:1], predictions))
    assert event is not None and event.row_id(0) == "e9-0"


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        json.dumps({"captureData": {}}),
        # One prediction for two rows: an error response, not a prediction.
        capture_record("e", WHEN, ROWS, PREDICTIONS[:1]),
    ],
)
def test_records_that_are_not_predictions_are_skipped(line: str) -> None:
    assert parse_capture_record(line) is None


def test_ground_truth_records_are_what_model_monitor_reads() -> None:
    record = json.loads(ground_truth_record("event-1", ["Adelie", None]))
    assert record["eventMetadata"] == {"eventId": "event-1"}
    assert record["eventVersion"] == "0"
    assert record["groundTruthData"]["encoding"] == "JSON"
    assert json.loads(record["groundTruthData"]["data"]) == ["Adelie", None]
    assert parse_ground_truth_record(json.dumps(record)) == ("event-1", ["Adelie", None])
    assert parse_ground_truth_record('{"groundTruthData": 1}') is None


def test_newer_labels_win_and_nulls_keep_older_ones() -> None:
    assert merge_labels(["a", None, "c"], [None, "b", "x"]) == ["a", "b", "x"]
    assert merge_labels([], ["a"]) == ["a"]


def test_capture_keys_sort_newest_first_across_variants() -> None:
    keys = [
        "datastore/penguins/version-1/2026/11/28/03/59-00-000-a.jsonl",
        "datastore/penguins/version-2/2026/11/28/04/01-00-000-b.jsonl",
        "datastore/penguins/version-1/2026/11/28/04/00-30-000-c.jsonl",
    ]
    assert [key[-7] for key in newest_first(keys)] == ["b", "c", "a"]
    assert variant_version(keys[1], "datastore", "penguins") == "2"
    assert variant_version("datastore/other/version-2/x.jsonl", "datastore", "penguins") is None
    assert hour_prefix(WHEN) == "2026/11/28/04"


def test_capture_keys_are_where_sagemaker_writes_them() -> None:
    key = capture_key("datastore", "penguins", "3", WHEN, "abc")
    assert key == "datastore/penguins/version-3/2026/11/28/04/05-06-789-abc.jsonl"
    assert variant_version(key, "datastore", "penguins") == "3"


def test_variant_names_say_the_role_and_the_version() -> None:
    assert [variant_name(role, "7") for role in (SERVED, SHADOW, BATCH)] == [
        "version-7", "shadow-7", "batch-7",
    ]  # fmt: skip
    assert parse_variant("shadow-12") == (SHADOW, "12")
    assert parse_variant("AllTraffic") is None and parse_variant("shadow-") is None
    key = capture_key("datastore", "penguins", "8", WHEN, "abc", SHADOW)
    assert key == "datastore/penguins/shadow-8/2026/11/28/04/05-06-789-abc.jsonl"
    assert capture_variant(key, "datastore", "penguins") == (SHADOW, "8")
    assert variant_version(key, "datastore", "penguins") == "8"


def test_the_inference_id_joins_a_request_across_variants() -> None:
    """SageMaker records the caller's InferenceId; without one, the event id is the key."""
    served = parse_capture_record(capture_record("e1", WHEN, ROWS, PREDICTIONS, "req-9"))
    shadow = parse_capture_record(
        capture_record("e2", WHEN, ROWS, PREDICTIONS, "req-9"), "4", SHADOW
    )
    assert served is not None and shadow is not None
    assert served.request_key == shadow.request_key == "req-9"
    assert (shadow.role, shadow.model_version) == (SHADOW, "4")
    record = json.loads(capture_record("e3", WHEN, ROWS, PREDICTIONS))
    assert "inferenceId" not in record["eventMetadata"]
    bare = parse_capture_record(json.dumps(record))
    assert bare is not None and bare.request_key == "e3" and bare.role == SERVED
