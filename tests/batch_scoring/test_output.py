"""The output of a batch-scoring run (src/batch_scoring/output.py): parts of differing
types assembled in order, the empty output, and publishing with the rejects file.
Files are real files in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batch_scoring.output import assemble, empty_output, output_schema, publish_output, write_part
from batch_scoring.rows import REJECT_COLUMNS
from common.data import DatasetSchema

SCHEMA = DatasetSchema(
    target="label", numeric_features=("x",), categorical_features=("c",), extraneous_values={}
)


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


def test_without_parts_the_output_and_its_rejects_file_are_published_empty(
    tmp_path: Path,
) -> None:
    output, rejects = tmp_path / "scored.parquet", tmp_path / "scored.rejects.parquet"
    rejects.write_bytes(b"an older run's refusals")
    written = publish_output(
        [], [], input_columns=["x", "c"], schema=SCHEMA, output_location=str(output),
        rejects_location=str(rejects), run_id="5",
    )  # fmt: skip
    assert written == 0
    assert len(pd.read_parquet(output)) == 0
    assert list(pd.read_parquet(rejects).columns) == ["x", "c", *REJECT_COLUMNS]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "scored.parquet", "scored.rejects.parquet"
    ]  # fmt: skip
