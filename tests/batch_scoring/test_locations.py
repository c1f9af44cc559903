"""Batch scoring's files, local and on S3 (src/batch_scoring/locations.py): where they
go, and how they are fetched, staged, published in one move and cleaned up.

Files are real files in a temporary directory; S3 is a real moto server process.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support.aws import MotoServer

from batch_scoring.locations import (
    fetch,
    publish,
    rejects_location,
    remove_staging,
    staging_location,
    staging_removed_on_failure,
    store,
)


def test_the_rejects_file_and_the_staging_area_are_beside_the_output(tmp_path: Path) -> None:
    assert rejects_location("s3://b/out/p.parquet") == "s3://b/out/p.rejects.parquet"
    assert rejects_location("out/p") == "out/p.rejects.parquet"
    assert staging_location("s3://b/out/p.parquet", "7") == "s3://b/out/p.parquet.staging-7/"
    local = staging_location(str(tmp_path / "p.parquet"), "7")
    assert local == str(tmp_path / ".p.parquet.staging-7")


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


def test_a_failure_removes_the_staging_area_and_goes_on(tmp_path: Path) -> None:
    staging = staging_location(str(tmp_path / "scored.parquet"), "3")
    part = tmp_path / "part.bin"
    part.write_bytes(b"part")
    store(str(part), f"{staging}/part-0")
    with staging_removed_on_failure(staging):
        pass
    assert Path(staging).is_dir()  # kept for the next step
    with pytest.raises(KeyError), staging_removed_on_failure(staging):
        raise KeyError("failed")
    assert not Path(staging).exists()


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
