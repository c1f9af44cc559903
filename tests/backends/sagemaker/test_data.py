"""Tests for backends.sagemaker.data: invoking the endpoint, reading its captures (the
shadow's answers joined to the served ones), labels, and batch saves, on moto's S3.

moto writes no capture files: the tests write them to moto's S3, in SageMaker's format,
and the backend reads them back; batch saves are written by the backend itself.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.stub import ANY, Stubber
from support.sagemaker_setup import (
    BUCKET,
    ROW,
    SETTINGS,
    answers,
    write_captures,
)

from backends.base import CAPTURE_COLUMNS, BackendError
from backends.sagemaker import Sagemaker, data
from backends.sagemaker.formats import SHADOW, hour_prefix

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


def test_invoke_names_each_request_so_its_shadow_answer_can_be_joined(
    sagemaker_moto: Any,
) -> None:
    """Stubber on sagemaker-runtime: moto accepts, and records nowhere, the InferenceId."""
    backend = Sagemaker(SETTINGS)
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    backend.aws.clients["sagemaker-runtime"] = runtime
    body = json.dumps({"predictions": answers("Gentoo")}).encode()

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


# --- label_by_id reads only the files that can hold the ids ------------------------------


def prediction_id(moment: datetime, number: int) -> str:
    """A prediction id as the servers and the batch pipeline make them: UUIDv7, 32 hex."""
    milliseconds = int(moment.timestamp() * 1000)
    return f"{milliseconds << 80 | 0x7 << 76 | 0b10 << 62 | number:032x}"


def counting_capture_reads(backend: Sagemaker) -> list[str]:
    """The keys the backend's own S3 client reads from now on (a hook on the real
    client, counting its GetObject calls; nothing is changed)."""
    keys: list[str] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].startswith("datastore/"):
            keys.append(params["Key"])

    backend.aws.s3.meta.events.register("before-parameter-build.s3.GetObject", note)
    return keys


def test_label_by_id_reads_only_the_capture_files_that_can_hold_the_ids(
    sagemaker_moto: Any,
) -> None:
    """SageMaker writes a file an hour here, each holding predictions made seconds
    before; two batch chunks were saved later. A label for an online prediction reads
    its file's neighbourhood; one for a batch prediction, its chunk's object."""
    backend = Sagemaker(SETTINGS)
    hours = [datetime(2026, 11, 28, hour, tzinfo=UTC) for hour in range(1, 6)]
    online = {}
    for number, hour in enumerate(hours):
        made = prediction_id(hour - timedelta(seconds=2), number)
        online[hour.hour] = made
        answer = [{"prediction": "Adelie", "confidence": 0.9, "id": made}]
        write_captures("1", hour, [(f"e{number}", [ROW], answer)])
    started = datetime(2026, 11, 28, 6, tzinfo=UTC)
    chunk_ids = []
    for chunk in range(2):
        inputs, outputs = batch_frames(100)
        outputs["id"] = [prediction_id(started, chunk << 30 | row) for row in range(100)]
        chunk_ids.append(list(outputs["id"]))
        backend.save(inputs, outputs, source="batch")
    batch_keys = sorted(key for key in capture_objects() if "/batch-3/" in key)
    assert len(batch_keys) == 2 and len(capture_objects()) == 7
    reads = counting_capture_reads(backend)

    assert backend.label_by_id({online[3]: "Gentoo"}) == 1
    read_hours = sorted(int(key.split("/")[-2]) for key in reads)
    assert read_hours == [2, 3, 4]  # the 3 o'clock file and its neighbours
    reads.clear()
    assert backend.label_by_id({chunk_ids[1][42]: "Chinstrap"}) == 1
    # That chunk's object, and the newest online file, which may hold anything later.
    assert sorted(reads) == sorted([batch_keys[1], max(capture_objects())])
    assert "/version-1/" in max(capture_objects()) and "/05/" in max(capture_objects())

    labelled = backend.load(limit=1000, labeled_only=True)
    assert labelled is not None
    assert dict(zip(labelled["id"], labelled["ground_truth"], strict=True)) == {
        online[3]: "Gentoo", chunk_ids[1][42]: "Chinstrap",
    }  # fmt: skip


def test_label_by_id_still_finds_an_id_in_a_file_its_name_does_not_announce(
    sagemaker_moto: Any,
) -> None:
    """A file named by a time far from its predictions' (another writer's naming): the
    ids missing from the likely files are looked for in the others; none is lost."""
    backend = Sagemaker(SETTINGS)
    late = prediction_id(datetime(2026, 11, 28, 9, tzinfo=UTC), 1)
    answer = [{"prediction": "Adelie", "confidence": 0.9, "id": late}]
    write_captures("1", datetime(2026, 11, 28, 1, tzinfo=UTC), [("e1", [ROW], answer)])
    write_captures("1", datetime(2026, 11, 28, 2, tzinfo=UTC), [("e2", [ROW], answers("Adelie"))])
    write_captures("1", datetime(2026, 11, 28, 3, tzinfo=UTC), [("e3", [ROW], answers("Adelie"))])
    assert backend.label_by_id({late: "Gentoo"}) == 1
    labelled = backend.load(limit=10, labeled_only=True)
    assert labelled is not None and list(labelled["id"]) == [late]


def test_saving_the_same_batch_rows_again_replaces_their_capture_object(
    sagemaker_moto: Any,
) -> None:
    """A retried batch chunk saves its rows again under the same ids: the object is
    written again at the same key, never beside the first."""
    backend = Sagemaker(SETTINGS)
    inputs, outputs = batch_frames(300)
    started = datetime(2026, 11, 28, 6, tzinfo=UTC)
    outputs["id"] = [prediction_id(started, row) for row in range(300)]
    backend.save(inputs, outputs, source="batch")
    first = capture_objects()
    backend.save(inputs, outputs, source="batch")
    assert capture_objects() == first and len(first) == 1
    assert f"{outputs['id'].iloc[0]}-{outputs['id'].iloc[-1]}" in first[0]
    assert "/2026/11/28/06/00-00-000-" in first[0]  # at the time of its first id
    frame = backend.load(limit=1000)
    assert frame is not None and len(frame) == 300 and frame["id"].is_unique
