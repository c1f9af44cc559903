"""Tests for common.data: schema, reading, cleaning and shuffling a CSV dataset, from a
file or from S3 (`--dataset s3://...`, read with `metaflow.S3` from moto on 127.0.0.1).

Metaflow reads METAFLOW_S3_ENDPOINT_URL when it is imported, before the `moto_server`
fixture sets it in this process, so every S3 read runs in a fresh Python process.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from support.aws import MotoServer
from support.flows import python_result
from support.paths import LOCAL_CONFIG, PENGUINS_CSV

from common.config import load_project_configuration
from common.data import (
    DatasetError,
    DatasetSchema,
    clean_dataset,
    load_dataset,
    read_dataset,
    shuffle,
)

SECTION = {
    "target": "label",
    "numeric_features": ["width", "height"],
    "categorical_features": ["color"],
    "extraneous_values": {"color": ["."], "width": ["?"]},
}

CSV = """\
id,width,height,color,label
1,1.5,10,red,alpha
2,?,11,.,beta
3,2.5,,blue,alpha
4,3.0,13,red,
5,4.5,14,,beta
6,5.0,15,green,gamma
"""


@pytest.fixture
def schema() -> DatasetSchema:
    return DatasetSchema.from_config(SECTION)


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- DatasetSchema -------------------------------------------------------------------------


def test_schema_from_config(schema: DatasetSchema) -> None:
    assert schema.target == "label"
    assert schema.numeric_features == ("width", "height")
    assert schema.categorical_features == ("color",)
    assert schema.extraneous_values == {"color": (".",), "width": ("?",)}
    assert schema.features == ["width", "height", "color"]
    assert schema.columns == ["label", "width", "height", "color"]


@pytest.mark.parametrize("extraneous", [None, {}])
def test_schema_without_extraneous_values(extraneous: dict | None) -> None:
    section = {key: value for key, value in SECTION.items() if key != "extraneous_values"}
    if extraneous is not None:
        section["extraneous_values"] = extraneous
    assert DatasetSchema.from_config(section).extraneous_values == {}


def test_schema_is_immutable(schema: DatasetSchema) -> None:
    with pytest.raises(AttributeError):
        schema.target = "other"  # type: ignore[misc]


# --- read_dataset ------------------------------------------------------------------------


def test_read_dataset_returns_the_whole_file(tmp_path: Path, schema: DatasetSchema) -> None:
    data = read_dataset(write(tmp_path, CSV), schema)
    assert len(data) == 6
    assert list(data.columns) == ["id", "width", "height", "color", "label"]


def test_read_dataset_missing_file(tmp_path: Path, schema: DatasetSchema) -> None:
    path = tmp_path / "nowhere" / "missing.csv"
    with pytest.raises(DatasetError) as info:
        read_dataset(path, schema)
    message = str(info.value)
    assert os.fspath(path) in message
    assert "--dataset" in message


def test_read_dataset_directory_is_not_a_file(tmp_path: Path, schema: DatasetSchema) -> None:
    with pytest.raises(DatasetError, match="not found"):
        read_dataset(tmp_path, schema)


def test_read_dataset_missing_configured_column(tmp_path: Path, schema: DatasetSchema) -> None:
    path = write(tmp_path, "width,height,label\n1,2,a\n")
    with pytest.raises(DatasetError) as info:
        read_dataset(path, schema)
    message = str(info.value)
    assert "['color']" in message
    assert os.fspath(path) in message


def test_read_dataset_empty_file(tmp_path: Path, schema: DatasetSchema) -> None:
    with pytest.raises(DatasetError, match="Cannot read"):
        read_dataset(write(tmp_path, ""), schema)


# --- clean_dataset -----------------------------------------------------------------------


def cleaned(tmp_path: Path, schema: DatasetSchema, text: str = CSV) -> pd.DataFrame:
    return clean_dataset(read_dataset(write(tmp_path, text), schema), schema)


def test_clean_keeps_only_configured_columns(tmp_path: Path, schema: DatasetSchema) -> None:
    assert list(cleaned(tmp_path, schema).columns) == ["label", "width", "height", "color"]


def test_clean_drops_rows_without_target(tmp_path: Path, schema: DatasetSchema) -> None:
    data = cleaned(tmp_path, schema)
    assert len(data) == 5
    assert data["label"].notna().all()
    assert list(data.index) == list(range(5))
    assert data["label"].tolist() == ["alpha", "beta", "alpha", "beta", "gamma"]


def test_clean_turns_extraneous_values_into_nan(tmp_path: Path, schema: DatasetSchema) -> None:
    data = cleaned(tmp_path, schema)
    # Row 2 of the file: width "?" and color "." are configured as missing.
    assert math.isnan(data.loc[1, "width"])
    assert pd.isna(data.loc[1, "color"])
    assert "." not in data["color"].tolist()
    assert "?" not in data["width"].astype(str).tolist()


def test_clean_types_numeric_columns(tmp_path: Path, schema: DatasetSchema) -> None:
    data = cleaned(tmp_path, schema)
    assert data["width"].dtype == np.float64
    assert data["height"].dtype == np.float64
    assert data["width"].tolist()[0] == 1.5
    assert data["color"].dtype == object
    assert data["color"].isna().sum() == 2  # "." and an empty cell


def test_clean_extraneous_target_value_drops_row(tmp_path: Path) -> None:
    section = dict(SECTION, extraneous_values={"label": ["unknown"]})
    schema = DatasetSchema.from_config(section)
    text = "width,height,color,label\n1,2,red,a\n3,4,blue,unknown\n5,6,red,b\n"
    data = cleaned(tmp_path, schema, text)
    assert data["label"].tolist() == ["a", "b"]


def test_clean_numeric_column_with_text_is_an_error(tmp_path: Path, schema: DatasetSchema) -> None:
    text = "width,height,color,label\n1,2,red,a\n3,tall,blue,b\n5,6,red,b\n"
    with pytest.raises(DatasetError) as info:
        cleaned(tmp_path, schema, text)
    message = str(info.value)
    assert "'height'" in message
    assert "tall" in message
    assert "extraneous_values" in message


def test_clean_needs_two_classes(tmp_path: Path, schema: DatasetSchema) -> None:
    text = "width,height,color,label\n1,2,red,a\n3,4,blue,a\n5,6,red,\n"
    with pytest.raises(DatasetError, match="at least two classes"):
        cleaned(tmp_path, schema, text)


def test_clean_does_not_modify_its_input(tmp_path: Path, schema: DatasetSchema) -> None:
    raw = read_dataset(write(tmp_path, CSV), schema)
    before = raw.copy()
    clean_dataset(raw, schema)
    pd.testing.assert_frame_equal(raw, before)


# --- shuffle and load_dataset --------------------------------------------------------------


@pytest.fixture
def numbered() -> pd.DataFrame:
    return pd.DataFrame({"n": range(50), "s": [f"row{i}" for i in range(50)]})


def test_shuffle_is_repeatable_with_a_seed(numbered: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(shuffle(numbered, 7), shuffle(numbered, 7))


def test_shuffle_differs_with_another_seed(numbered: pd.DataFrame) -> None:
    assert shuffle(numbered, 7)["n"].tolist() != shuffle(numbered, 8)["n"].tolist()


def test_shuffle_keeps_rows_and_resets_index(numbered: pd.DataFrame) -> None:
    shuffled = shuffle(numbered, 3)
    assert shuffled["n"].tolist() != list(range(50))
    assert sorted(shuffled["n"].tolist()) == list(range(50))
    assert list(shuffled.index) == list(range(50))
    # Rows move as a whole.
    assert (shuffled["s"] == "row" + shuffled["n"].astype(str)).all()


def test_load_dataset_reads_cleans_and_shuffles(tmp_path: Path, schema: DatasetSchema) -> None:
    path = write(tmp_path, CSV)
    first = load_dataset(path, schema, seed=1)
    assert len(first) == 5
    assert sorted(first["label"].tolist()) == ["alpha", "alpha", "beta", "beta", "gamma"]
    pd.testing.assert_frame_equal(first, load_dataset(path, schema, seed=1))


# --- From S3 -------------------------------------------------------------------------------

BUCKET = "dataset-tests"


@pytest.fixture(scope="module")
def dataset_url(moto_server: MotoServer) -> str:
    s3 = boto3.client("s3", endpoint_url=moto_server.url)
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(PENGUINS_CSV), BUCKET, "datasets/penguins.csv")
    return f"s3://{BUCKET}/datasets/penguins.csv"


def load_in_fresh_process(url: str) -> dict[str, Any]:
    """Load `url` as the @dataset decorator does; return its rows or the error."""
    section = load_project_configuration(LOCAL_CONFIG)["dataset"]
    code = (
        "import json\n"
        "from common.data import DatasetError, DatasetSchema, load_dataset\n"
        f"schema = DatasetSchema.from_config(json.loads({json.dumps(section)!r}))\n"
        "try:\n"
        f"    data = load_dataset({url!r}, schema, 42)\n"
        "    result = {'rows': data.to_json(orient='records')}\n"
        "except DatasetError as error:\n"
        "    result = {'error': str(error)}\n"
        "print('RESULT=' + json.dumps(result))\n"
    )
    return python_result(code, "RESULT")


def test_s3_dataset_reads_like_the_local_file(dataset_url: str) -> None:
    result = load_in_fresh_process(dataset_url)

    section = load_project_configuration(LOCAL_CONFIG)["dataset"]
    local = load_dataset(PENGUINS_CSV, DatasetSchema.from_config(section), 42)
    assert json.loads(result["rows"]) == json.loads(local.to_json(orient="records"))


def test_missing_s3_object_says_what_to_do(dataset_url: str) -> None:
    url = dataset_url.replace("penguins.csv", "missing.csv")

    error = load_in_fresh_process(url)["error"]

    assert f"Dataset object not found: {url!r}" in error
    assert "--dataset" in error
