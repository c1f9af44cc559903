"""Tests for backends.aws: the assumed role's session, one clear message per AWS error,
and retries of throttled calls."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.http_threads import serving_in_thread
from support.sagemaker_setup import (
    SETTINGS,
    sagemaker_client,
)

from backends.aws import client_config
from backends.base import BackendError
from backends.sagemaker import Sagemaker


def test_assume_role_is_honoured_and_its_secrets_are_never_logged(
    sagemaker_moto: Any,
    fake_model_dir: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    role = boto3.client("iam").create_role(
        RoleName="deployer", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    settings = {**SETTINGS, "assume_role": role}
    del settings["execution_role"]
    backend = Sagemaker(settings)

    with caplog.at_level(logging.DEBUG):
        backend.deploy(str(fake_model_dir), "1")
        backend.deployed_version()

    identity = backend.client("sts").get_caller_identity()["Arn"]
    assert ":assumed-role/deployer/" in identity
    model_name = sagemaker_client().list_models()["Models"][0]["ModelName"]
    assert sagemaker_client().describe_model(ModelName=model_name)["ExecutionRoleArn"] == role
    credentials = backend.aws.session.get_credentials().get_frozen_credentials()
    logged = caplog.text + "".join(capsys.readouterr())
    for secret in (credentials.secret_key, credentials.token, "testing"):
        assert secret not in logged


def test_aws_errors_become_one_clear_message(sagemaker_moto: Any) -> None:
    backend = Sagemaker({**SETTINGS, "ground_truth_uri": "s3://no-such-bucket/labels"})
    with pytest.raises(BackendError, match=r"NoSuchBucket.*create it, or fix the S3 URI"):
        backend.ground_truth()


class FlakyAws(BaseHTTPRequestHandler):
    """Answers ThrottlingException twice, then that the endpoint does not exist."""

    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        throttled = type(self).calls <= 2
        code = "ThrottlingException" if throttled else "ValidationException"
        message = "Rate exceeded" if throttled else "Could not find endpoint penguins-test."
        body = json.dumps({"__type": code, "message": message}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky_aws() -> Iterator[str]:
    FlakyAws.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyAws)
    with serving_in_thread(server) as port:
        yield f"http://127.0.0.1:{port}"


def test_throttling_is_retried_with_backoff(moto_server: Any, flaky_aws: str) -> None:
    backend = Sagemaker(SETTINGS)
    backend.aws.clients["sagemaker"] = boto3.client(
        "sagemaker", endpoint_url=flaky_aws, region_name="us-east-1", config=client_config()
    )
    assert backend.deployed_version() is None
    assert FlakyAws.calls == 3
