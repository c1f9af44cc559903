"""The batch scoring pipeline's plain functions (src/common/scoring.py).

Files are real files in a temporary directory; S3 is a real moto server process.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.aws import MotoServer

from batch_scoring.files import (
    OUT_OF_RANGE,
    ForwardProblem,
    Sample,
    ScoringError,
    assemble,
    check_columns,
    check_locations,
    check_parameters,
    class_distribution,
    empty_output,
    fetch,
    invalid_fraction_error,
    numbers_from_text,
    output_schema,
    pack_model,
    publish,
    read_chunks,
    read_columns,
    rejects_frame,
    rejects_location,
    remove_staging,
    score_rows,
    staging_location,
    store,
    unpack_model,
    write_part,
)
from common.data import DatasetSchema

SCHEMA = DatasetSchema(
    target="label", numeric_features=("x",), categorical_features=("c",), extraneous_values={}
)


# --- locations -----------------------------------------------------------------------------


def test_the_rejects_file_and_the_staging_area_are_beside_the_output(tmp_path: Path) -> None:
    assert rejects_location("s3://b/out/p.parquet") == "s3://b/out/p.rejects.parquet"
    assert rejects_location("out/p") == "out/p.rejects.parquet"
    assert staging_location("s3://b/out/p.parquet", "7") == "s3://b/out/p.parquet.staging-7/"
    local = staging_location(str(tmp_path / "p.parquet"), "7")
    assert local == str(tmp_path / ".p.parquet.staging-7")


@pytest.mark.parametrize(
    ("input_location", "output_location", "message"),
    [
        ("new.json", "out.parquet", "unknown format '.json'"),
        ("new.csv", "", "--output is required"),
        ("new.csv", "s3://bucket", "names a bucket"),
        ("new.csv", "new.csv", "the input must stay"),
    ],
)
def test_bad_locations_are_refused_saying_why(
    input_location: str, output_location: str, message: str
) -> None:
    with pytest.raises(ScoringError, match=message):
        check_locations(input_location, output_location)


@pytest.mark.parametrize(
    ("chunk_rows", "fraction", "message"),
    [(0, 0.01, "--chunk-rows"), (10, 1.5, "--max-invalid-fraction"), (10, -0.1, "fraction")],
)
def test_bad_parameters_are_refused(chunk_rows: int, fraction: float, message: str) -> None:
    with pytest.raises(ScoringError, match=message):
        check_parameters(chunk_rows, fraction)


def test_a_missing_column_names_what_was_expected_and_found() -> None:
    with pytest.raises(ScoringError) as refused:
        check_columns(["x", "other"], SCHEMA, "in.csv")
    assert "['c']" in str(refused.value)
    assert "Expected columns: ['x', 'c']; found: ['x', 'other']" in str(refused.value)


# --- reading -------------------------------------------------------------------------------


def test_a_csv_is_read_in_chunks_of_the_asked_size(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    pd.DataFrame({"x": range(25), "c": ["a"] * 25}).to_csv(path, index=False)
    chunks = list(read_chunks(str(path), "csv", 10))
    assert [len(chunk) for chunk in chunks] == [10, 10, 5]
    assert pd.concat(chunks)["x"].tolist() == list(range(25))
    assert read_columns(str(path), "csv") == ["x", "c"]


def test_a_parquet_file_is_read_in_chunks_of_the_asked_size(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": list(range(25)), "c": ["a"] * 25}), path, row_group_size=7)
    chunks = list(read_chunks(str(path), "parquet", 10))
    assert [len(chunk) for chunk in chunks] == [10, 10, 5]
    assert read_columns(str(path), "parquet") == ["x", "c"]


@pytest.mark.parametrize("content", ["", "x,c\n"])
def test_an_empty_csv_has_no_chunks(tmp_path: Path, content: str) -> None:
    path = tmp_path / "in.csv"
    path.write_text(content)
    assert list(read_chunks(str(path), "csv", 10)) == []
    assert read_columns(str(path), "csv") == (["x", "c"] if content else [])


def test_numbers_in_csv_text_become_numbers_and_the_rest_stays_text() -> None:
    frame = pd.DataFrame({"x": ["1.5", "forty", None, "inf"], "c": ["1", "2", "3", "4"]})
    converted = numbers_from_text(frame, ["x"])
    assert converted["x"].tolist()[:2] == [1.5, "forty"]
    assert pd.isna(converted["x"].iloc[2]) and converted["x"].iloc[3] == np.inf
    assert converted["c"].tolist() == ["1", "2", "3", "4"]  # not a numeric feature
    assert numbers_from_text(pd.DataFrame({"x": ["1", "2"]}), ["x"])["x"].dtype.kind == "i"


def test_the_sample_is_uniform_over_chunks_and_bounded() -> None:
    sample = Sample(100, seed=1)
    for start in range(0, 10_000, 1000):
        sample.add(pd.DataFrame({"x": range(start, start + 1000)}))
    rows = sample.rows
    assert rows is not None and len(rows) == 100
    assert rows["x"].is_unique
    # Drawn from the whole table, not its first chunks: every tenth has some.
    assert (rows["x"] // 1000).nunique() >= 7


# --- rows --------------------------------------------------------------------------------------


class Scorer:
    """Answers every row but those whose `x` is huge, as `Model.score` refuses them."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, columns: dict[str, np.ndarray]) -> tuple[list[str], list[float]]:
        self.calls += 1
        if (columns["x"] > 1e30).any():
            raise ValueError("Row 0: the values are too far out of range")
        return [f"class-{int(v)}" for v in columns["x"]], [0.5] * len(columns["x"])


def test_rows_the_model_cannot_answer_are_set_aside_and_the_rest_scored() -> None:
    values = np.array([0, 1, 1e40, 3, 4, 5, 1e40, 7], dtype="float64")
    scorer = Scorer()
    predictions, confidences, answered = score_rows(scorer, {"x": values})
    assert answered == [0, 1, 3, 4, 5, 7]
    assert predictions == [f"class-{i}" for i in answered]
    assert len(confidences) == len(answered)
    assert scorer.calls < len(values) * 2  # halves, not row by row and then some
    assert score_rows(Scorer(), {"x": values[:0]}) == ([], [], [])


def test_refused_rows_keep_their_values_as_text_and_their_place_in_the_input() -> None:
    frame = pd.DataFrame({"x": [1.0, "forty", np.nan], "c": ["a", "b", None]})
    problems = [ForwardProblem(1), ForwardProblem(2)]
    rejects = rejects_frame(frame, problems, first_row=100)
    assert rejects["row"].tolist() == [101, 102]
    assert rejects["x"].tolist() == ["forty", None]
    assert rejects["problem"].tolist() == [OUT_OF_RANGE, OUT_OF_RANGE]
    assert list(rejects.columns) == ["x", "c", "row", "field", "problem", "reason"]


def test_the_invalid_fraction_is_allowed_up_to_its_limit() -> None:
    assert invalid_fraction_error(1, 100, 0.01) is None
    assert invalid_fraction_error(0, 0, 0.0) is None
    message = invalid_fraction_error(2, 100, 0.01)
    assert message is not None and "2 of 100 rows (2.00%)" in message


def test_the_class_distribution_compares_scored_with_training() -> None:
    table = class_distribution({"a": 3, "b": 1}, ["a", "c", "c", "a"])
    assert table == [
        ["a", 3, "75.0%", 2, "50.0%"],
        ["b", 1, "25.0%", 0, "0.0%"],
        ["c", 0, "0.0%", 2, "50.0%"],
    ]


# --- the output ----------------------------------------------------------------------------


def test_parts_of_different_types_assemble_in_order(tmp_path: Path) -> None:
    frames = [
        pd.DataFrame({"x": [1, 2], "note": [None, None], "id": [1, 2]}),
        pd.DataFrame({"x": [2.5], "note": ["n"], "id": ["three"]}),
    ]
    parts = [str(tmp_path / f"part-{i}.parquet") for i in range(2)]
    schema = output_schema(
        [write_part(frame, part) for frame, part in zip(frames, parts, strict=True)]
    )
    assert schema.field("x").type == pa.float64()
    assert schema.field("note").type == pa.string()
    assert schema.field("id").type == pa.string()  # integers and text: text
    assert assemble(parts, schema, str(tmp_path / "out.parquet")) == 3
    output = pd.read_parquet(tmp_path / "out.parquet")
    assert output["x"].tolist() == [1.0, 2.0, 2.5]
    assert output["id"].tolist() == ["1", "2", "three"]
    assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups == 2


def test_an_empty_output_has_the_input_and_output_columns() -> None:
    frame = empty_output(["label", "x", "c"], SCHEMA)
    assert list(frame.columns) == ["label", "x", "c", "prediction", "confidence", "id",
                                   "model_version", "scored_at"]  # fmt: skip
    assert len(frame) == 0 and frame["x"].dtype == "float64"


def test_a_local_output_is_replaced_in_one_move(tmp_path: Path) -> None:
    new = tmp_path / "new.parquet"
    new.write_bytes(b"new")
    destination = tmp_path / "out" / "scored.parquet"
    destination.parent.mkdir()
    destination.write_bytes(b"old")
    publish(str(new), str(destination), "42")
    assert destination.read_bytes() == b"new"
    assert [p.name for p in destination.parent.iterdir()] == ["scored.parquet"]
    assert new.exists()  # the source is left to its caller


def test_s3_files_are_staged_published_and_cleaned_up(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=moto_server.url)
    client.create_bucket(Bucket="scoring-unit")
    local = tmp_path / "part.bin"
    local.write_bytes(b"part")
    staging = staging_location("s3://scoring-unit/out/scored.parquet", "9")
    for index in range(3):
        store(str(local), f"{staging}part-{index}")
    downloaded = fetch(f"{staging}part-1", str(tmp_path))
    assert downloaded is not None and Path(downloaded).read_bytes() == b"part"
    assert fetch("s3://scoring-unit/absent", str(tmp_path)) is None

    client.put_object(Bucket="scoring-unit", Key="out/scored.parquet", Body=b"old")
    local.write_bytes(b"new")
    publish(str(local), "s3://scoring-unit/out/scored.parquet", "9")
    remove_staging(staging)
    body: Any = client.get_object(Bucket="scoring-unit", Key="out/scored.parquet")["Body"]
    assert body.read() == b"new"
    keys = [item["Key"] for item in client.list_objects_v2(Bucket="scoring-unit")["Contents"]]
    assert keys == ["out/scored.parquet"]  # no temporary key, no staging


def test_a_local_file_is_fetched_in_place(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("x\n1\n")
    assert fetch(str(path), str(tmp_path / "elsewhere")) == str(path)
    assert fetch(str(tmp_path / "absent.csv"), str(tmp_path)) is None
    assert pd.read_csv(io.StringIO(path.read_text()))["x"].tolist() == [1]


def test_a_models_files_travel_whole_and_stay_in_their_directory(tmp_path: Path) -> None:
    model = tmp_path / "downloaded"
    (model / "artifacts").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "artifacts" / "forward.npz").write_bytes(b"\x00weights")
    (model / "code").mkdir()
    (model / "code" / "big.py").write_text("not needed to score")
    files = pack_model(str(model), [str(model / "artifacts" / "forward.npz")])
    assert files == {"MLmodel": b"flavors: {}\n", "artifacts/forward.npz": b"\x00weights"}

    unpacked = Path(unpack_model(files, str(tmp_path / "task")))
    assert unpacked == tmp_path / "task" / "model"
    assert (unpacked / "artifacts" / "forward.npz").read_bytes() == b"\x00weights"
    assert not (unpacked / "code").exists()
    with pytest.raises(ScoringError, match="outside its directory"):
        unpack_model({"../escaped": b"x"}, str(tmp_path / "other"))
    assert not (tmp_path / "other" / "escaped").exists()
