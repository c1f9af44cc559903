"""`start`'s split of the input (src/batch_scoring/splitting.py): chunks staged for their
tasks, refused rows set aside at their places in the input, the gate's sample.

A feature transformer is fitted on the penguins in process (no model, no registry);
the staging area is a real directory.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from support.paths import LOCAL_CONFIG, PENGUINS_CSV

from batch_scoring.reading import open_input
from batch_scoring.splitting import stage_chunks
from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset
from inference.features import FeatureTransform
from model_training.preprocessing import fit_features_transformer


@pytest.fixture(scope="module")
def schema() -> DatasetSchema:
    return DatasetSchema.from_config(load_project_configuration(LOCAL_CONFIG)["dataset"])


@pytest.fixture(scope="module")
def features(schema: DatasetSchema) -> FeatureTransform:
    data = load_dataset(PENGUINS_CSV, schema, 42)
    return FeatureTransform.from_transformer(fit_features_transformer(data, schema))


def test_chunks_are_staged_and_refused_rows_set_aside_in_input_order(
    tmp_path: Path, schema: DatasetSchema, features: FeatureTransform
) -> None:
    rows = pd.read_csv(PENGUINS_CSV).iloc[:250].reset_index(drop=True)
    rows["island"] = rows["island"].astype(object)
    rows.loc[[3, 240], "island"] = "Atlantis"
    rows.to_csv(tmp_path / "input.csv", index=False)
    source = open_input(str(tmp_path / "input.csv"), schema, str(tmp_path))
    staging = tmp_path / "staging"
    staged = stage_chunks(
        source, features, schema, staging=str(staging), chunk_rows=200, sample_size=50,
        directory=str(tmp_path),
    )  # fmt: skip
    assert [chunk["rows"] for chunk in staged.chunks] == [199, 49]
    assert (staged.rows, staged.rejected_rows) == (250, 2)
    assert staged.reject_reasons == {("island", "unknown category"): 2}
    valid = pd.concat(pd.read_parquet(chunk["location"]) for chunk in staged.chunks)
    assert valid["__row__"].tolist() == [row for row in range(250) if row not in (3, 240)]
    rejects = pd.concat(pd.read_parquet(part) for part in staged.rejects_parts)
    assert rejects["row"].tolist() == [3, 240]
    assert staged.sample is not None and len(staged.sample) == 50
    assert staged.refusal_warnings()[0] == (
        "Refused 2 row(s): unknown category in field 'island'."
    )  # fmt: skip
    assert sorted(path.name for path in staging.iterdir()) == [
        "chunk-00000.parquet", "chunk-00001.parquet", "rejects-00000.parquet",
        "rejects-00001.parquet",
    ]  # fmt: skip


def test_an_input_without_rows_gives_one_task_with_nothing_to_score(
    tmp_path: Path, schema: DatasetSchema, features: FeatureTransform
) -> None:
    pd.read_csv(PENGUINS_CSV).iloc[:0].to_csv(tmp_path / "input.csv", index=False)
    source = open_input(str(tmp_path / "input.csv"), schema, str(tmp_path))
    staged = stage_chunks(
        source, features, schema, staging=str(tmp_path / "staging"), chunk_rows=200,
        sample_size=50, directory=str(tmp_path),
    )  # fmt: skip
    assert staged.chunks == [{"index": 0, "rows": 0, "location": None}]
    assert (staged.rows, staged.rejected_rows, staged.sample) == (0, 0, None)


def test_ragged_rows_are_refused_at_their_places_with_their_reason(
    tmp_path: Path, schema: DatasetSchema, features: FeatureTransform
) -> None:
    rows = pd.read_csv(PENGUINS_CSV).iloc[:30].reset_index(drop=True)
    rows["island"] = rows["island"].astype(object)
    rows.loc[12, "island"] = "Atlantis"
    lines = rows.to_csv(index=False).splitlines()
    lines[1] += ",extra,fields"  # the first data row: pandas would make an index of it
    lines[21] = lines[21].rsplit(",", 1)[0]  # row 20 lacks its last field
    (tmp_path / "input.csv").write_text("\n".join(lines) + "\n")
    source = open_input(str(tmp_path / "input.csv"), schema, str(tmp_path))
    staged = stage_chunks(
        source, features, schema, staging=str(tmp_path / "staging"), chunk_rows=16,
        sample_size=50, directory=str(tmp_path),
    )  # fmt: skip

    assert (staged.rows, staged.rejected_rows) == (30, 3)
    valid = pd.concat(pd.read_parquet(chunk["location"]) for chunk in staged.chunks)
    assert valid["__row__"].tolist() == [row for row in range(30) if row not in (0, 12, 20)]
    # Nothing shifted: every kept row has its own values in its own columns.
    expected = rows.drop(index=[0, 12, 20]).reset_index(drop=True)
    assert valid["island"].tolist() == expected["island"].tolist()
    assert valid["body_mass_g"].tolist() == pytest.approx(
        expected["body_mass_g"].tolist(), nan_ok=True
    )
    rejects = pd.concat(pd.read_parquet(part) for part in staged.rejects_parts)
    assert rejects["row"].tolist() == [0, 12, 20]
    assert rejects["problem"].tolist() == [
        "wrong number of fields", "unknown category", "wrong number of fields",
    ]  # fmt: skip
    width = len(rows.columns)
    assert (
        rejects["reason"]
        .iloc[0]
        .startswith(f"it has {width + 2} fields where the header has {width} columns")
    )
    assert lines[1] in rejects["reason"].iloc[0]  # the row, as it was written
    assert rejects["island"].iloc[0] is None  # no column can hold a ragged row's values
    assert "Refused 2 row(s): wrong number of fields." in staged.refusal_warnings()
