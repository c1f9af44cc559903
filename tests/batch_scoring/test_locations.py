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


# --- names someone else could have prepared ------------------------------------------------


def test_a_link_planted_at_the_old_temporary_name_is_not_followed(tmp_path: Path) -> None:
    """The output used to be copied to `.<name>.partial-<run id>`, a name anyone could
    predict: a link planted there made the run overwrite what it pointed to."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    destination = tmp_path / "out" / "scored.parquet"
    destination.parent.mkdir()
    planted = destination.with_name(".scored.parquet.partial-42")
    planted.symlink_to(victim)
    new = tmp_path / "new.parquet"
    new.write_bytes(b"new")

    publish(str(new), str(destination), "42")

    assert victim.read_bytes() == b"precious"
    assert destination.read_bytes() == b"new" and not destination.is_symlink()
    assert sorted(p.name for p in destination.parent.iterdir()) == [
        ".scored.parquet.partial-42", "scored.parquet",
    ]  # fmt: skip


def test_a_link_at_the_output_itself_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    destination = tmp_path / "scored.parquet"
    destination.symlink_to(victim)
    new = tmp_path / "new.parquet"
    new.write_bytes(b"new")
    publish(str(new), str(destination), "7")
    assert victim.read_bytes() == b"precious" and destination.read_bytes() == b"new"


def test_a_published_output_gets_the_permissions_a_new_file_gets(tmp_path: Path) -> None:
    import os

    new = tmp_path / "new.parquet"
    new.write_bytes(b"new")
    previous = os.umask(0o027)
    try:
        publish(str(new), str(tmp_path / "scored.parquet"), "7")
    finally:
        os.umask(previous)
    assert (tmp_path / "scored.parquet").stat().st_mode & 0o777 == 0o640


def test_a_staging_area_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    staging = Path(staging_location(str(tmp_path / "scored.parquet"), "5"))
    staging.symlink_to(elsewhere)
    part = tmp_path / "part.bin"
    part.write_bytes(b"rows")
    with pytest.raises(PermissionError, match=r"staging area .* is a link: something else made it"):
        store(str(part), f"{staging}/chunk-00000.parquet")
    assert list(elsewhere.iterdir()) == []


def test_staged_parts_are_private_and_replace_a_link_at_their_name(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    staging = Path(staging_location(str(tmp_path / "scored.parquet"), "6"))
    part = tmp_path / "part.bin"
    part.write_bytes(b"rows")
    store(str(part), f"{staging}/chunk-00000.parquet")
    (staging / "chunk-00001.parquet").symlink_to(victim)
    store(str(part), f"{staging}/chunk-00001.parquet")
    assert victim.read_bytes() == b"precious"
    assert staging.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in staging.iterdir()} == {
        "chunk-00000.parquet": 0o600, "chunk-00001.parquet": 0o600,
    }  # fmt: skip
