"""`--dataset s3://...`: the dataset read with `metaflow.S3` from moto on 127.0.0.1.

Metaflow reads METAFLOW_S3_ENDPOINT_URL when it is imported, before the `moto_server`
fixture sets it in this process, so every read runs in a fresh Python process.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from support.aws import MotoServer
from support.flows import python_result
from support.paths import LOCAL_CONFIG, PENGUINS_CSV

from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset

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
