"""A real `moto_server` process on 127.0.0.1 standing in for AWS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.ports import free_port
from support.state import session_directory


@dataclass
class MotoServer:
    """A `moto_server` process on 127.0.0.1 and the environment that points AWS clients at it."""

    url: str
    env: dict[str, str]

    def reset(self) -> None:
        """Forget every AWS resource created so far (moto's own reset endpoint)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"))

    def queue_sagemaker_results(self, bodies: list[dict[str, Any]]) -> None:
        """What moto's `invoke_endpoint` answers next (any endpoint), one body per call."""
        results = [{"Body": json.dumps(body), "ContentType": "application/json"} for body in bodies]
        request = urllib.request.Request(
            f"{self.url}/moto-api/static/sagemaker/endpoint-results",
            data=json.dumps({"results": results, "region": "us-east-1"}).encode(),
            method="POST",
        )
        urllib.request.urlopen(request).close()


def moto_environment(url: str) -> dict[str, str]:
    """Dummy credentials and endpoints so boto3, Metaflow and MLflow talk to moto only."""
    return {
        "AWS_ENDPOINT_URL": url,
        "METAFLOW_S3_ENDPOINT_URL": url,
        "MLFLOW_S3_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # Never read a developer's real profile or config files.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """`moto_server` as a real process for the session; its environment is set meanwhile.

    The environment goes into `os.environ` (and so into every pipeline run started
    after), because boto3 reads it when a client is created.
    """
    port = free_port()
    executable = Path(sys.executable).with_name("moto_server")
    log_path = session_directory() / "moto.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.close()
                raise RuntimeError(f"moto_server did not start: {log_path.read_text()}") from None
            time.sleep(0.1)
    env = moto_environment(url)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield MotoServer(url, env)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine; it holds nothing to save
            process.kill()
            process.wait()
        log.close()
