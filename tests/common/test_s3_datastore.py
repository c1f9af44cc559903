"""Tests for common.s3_datastore: Metaflow's S3 datastore keeps small batches in the
task's process, against a real `moto_server`.

Metaflow reads METAFLOW_S3_ENDPOINT_URL when it is imported, before the `moto_server`
fixture sets it in this process, so the datastore runs in a fresh Python process.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from support.aws import MotoServer
from support.flows import python_result

BUCKET = "s3-datastore-tests"

# Saves and loads through Metaflow's S3Storage, counting the `s3op` subprocesses.
CHILD = """
import json, os, tempfile
# Where Metaflow's S3 client downloads to (read at import): empty again once a load is done.
downloads = os.environ["METAFLOW_ARTIFACT_LOCALROOT"] = tempfile.mkdtemp()
from metaflow.plugins.datastores.s3_storage import S3Storage
from metaflow.plugins.datatools.s3.s3 import S3

calls = []
original = S3._s3op_with_retries
def counted(self, mode, **options):
    calls.append(mode)
    return original(self, mode, **options)
S3._s3op_with_retries = counted

def save(storage, prefix, count):
    before = len(calls)
    blobs = ((f"{prefix}/{i}", bytes([i % 256]) * (i + 1)) for i in range(count))
    storage.save_bytes(blobs, overwrite=True, len_hint=count)  # a task's whole artifact count
    return calls[before:]

def load(storage, paths):
    before, found = len(calls), {}
    with storage.load_bytes(paths) as loaded:
        for key, path, _ in loaded:
            found[key] = None if path is None else open(path, "rb").read().hex()
    return found, calls[before:]

storage = S3Storage(ROOT)
result = {"unpatched": save(storage, "unpatched", 20)}
from common.s3_datastore import transfer_small_batches_in_process
transfer_small_batches_in_process()
transfer_small_batches_in_process()  # idempotent: one wrapper, not two
result["small"] = save(storage, "small", 20)
paths = [f"small/{i}" for i in range(20)] + [f"absent/{i}" for i in range(10)]
result["loaded"], result["load_calls"] = load(storage, paths)
result["left_behind"] = os.listdir(downloads)
result["large"] = save(storage, "large", 70)
large, _ = load(storage, [f"large/{i}" for i in range(70)])
result["large_stored"] = sum(value is not None for value in large.values())
print("RESULT=" + json.dumps(result))
"""


@pytest.fixture(scope="module")
def datastore_run(moto_server: MotoServer) -> dict[str, Any]:
    boto3.client("s3", endpoint_url=moto_server.url).create_bucket(Bucket=BUCKET)
    code = CHILD.replace("ROOT", repr(f"s3://{BUCKET}/metaflow"))
    return python_result(code, "RESULT")


def test_metaflow_alone_starts_s3op_for_a_task_sized_batch(datastore_run: dict) -> None:
    # What the patch is for: without it, 20 objects (any task's artifact count) go
    # through the `s3op` subprocess.
    assert datastore_run["unpatched"] == ["put"]


def test_small_batch_is_saved_in_process(datastore_run: dict) -> None:
    assert datastore_run["small"] == []


def test_small_batch_loads_in_process_with_absent_paths_as_none(datastore_run: dict) -> None:
    loaded = datastore_run["loaded"]

    assert datastore_run["load_calls"] == []
    assert len(loaded) == 30
    for i in range(20):
        assert loaded[f"small/{i}"] == (bytes([i]) * (i + 1)).hex()
    assert all(loaded[f"absent/{i}"] is None for i in range(10))
    assert datastore_run["left_behind"] == []


def test_batch_beyond_the_limit_sends_its_rest_to_s3op(datastore_run: dict) -> None:
    # 64 in process, the remaining 6 in one `s3op` upload; every object is stored.
    assert datastore_run["large"] == ["put"]
    assert datastore_run["large_stored"] == 70
