"""Tests for backends.sagemaker.teardown, through `python -m backends.sagemaker`: delete
removes everything made for the endpoint, and nothing else, against moto."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.paths import SAGEMAKER_CONFIG
from support.sagemaker_setup import (
    BUCKET,
    IMAGE,
    ROLE,
    ROW,
    SETTINGS,
    answers,
    sagemaker_client,
    write_captures,
)

from backends.sagemaker import Sagemaker

# --- stopping, errors ------------------------------------------------------------------


def test_delete_removes_everything_made_for_the_endpoint_but_the_data(
    sagemaker_moto: Any, fake_model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    backend = Sagemaker(SETTINGS)
    backend.deploy(str(fake_model_dir), "1")
    key = write_captures("1", datetime(2026, 11, 28, 4, tzinfo=UTC), [
        ("e1", [ROW], answers("Adelie")),
    ])  # fmt: skip
    sagemaker = sagemaker_client()
    sagemaker.create_model(
        ModelName="someone-elses", PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=ROLE
    )

    from backends.sagemaker.cli import main

    config = SAGEMAKER_CONFIG
    environment = {"BUCKET": BUCKET, "ENDPOINT_NAME": "penguins-test"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        assert main(["status", "--config", str(config)]) == 0
        assert "InService, model version 1, 1 x ml.m5.large." in capsys.readouterr().out
        assert main(["delete", "--config", str(config)]) == 0
        assert main(["status", "--config", str(config)]) == 1

    assert backend.describe_endpoint() is None
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["someone-elses"]
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    keys = [item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [key]  # the captured data stays
