"""backends.sagemaker.data: a smoke test's captures are never evidence, and `load` reads
one version's captures when asked (issue 23), on moto's S3.

The smoke test's requests carry an `InferenceId` starting `smoke-`, which SageMaker
records with each capture; the tests write capture files as SageMaker does.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.stub import Stubber
from support.sagemaker_setup import ROW, SETTINGS, answers, write_captures

from backends.sagemaker import Sagemaker

WHEN = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)


def test_a_smoke_tests_request_is_named_as_one() -> None:
    from botocore.response import StreamingBody

    backend = Sagemaker(SETTINGS)
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    backend.aws.clients["sagemaker-runtime"] = runtime
    body = json.dumps({"predictions": answers("Gentoo")}).encode()
    sent: list[str] = []
    runtime.meta.events.register(
        "provide-client-params.sagemaker-runtime.InvokeEndpoint",
        lambda params, **_: sent.append(params["InferenceId"]),
    )
    with Stubber(runtime) as stub:
        for _ in range(2):
            stub.add_response(
                "invoke_endpoint",
                {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "json"},
            )
        backend.invoke([ROW], source="smoke")
        backend.invoke([ROW])
    assert sent[0].startswith("smoke-") and not sent[1].startswith("smoke-")


def test_smoke_test_captures_are_not_loaded_nor_labelled(sagemaker_moto: Any) -> None:
    write_captures("2", WHEN, [
        ("e1", [ROW, ROW], answers("Adelie", "Gentoo", prefix="smoke"), "smoke-1"),
        ("e2", [ROW], answers("Gentoo", prefix="served"), "req-2"),
    ])  # fmt: skip
    backend = Sagemaker(SETTINGS)
    frame = backend.load(limit=10)
    assert frame is not None and list(frame["id"]) == ["served0"]
    assert backend.label(1.0) == 1
    assert set(backend.ground_truth()) == {"e2"}


def test_load_reads_one_versions_captures_when_asked(sagemaker_moto: Any) -> None:
    write_captures("1", WHEN, [("e1", [ROW, ROW], answers("Adelie", "Gentoo", prefix="a"))])
    write_captures("2", WHEN + timedelta(minutes=5), [("e2", [ROW], answers("Gentoo", prefix="b"))])
    backend = Sagemaker(SETTINGS)
    first = backend.load(limit=10, model_version="1")
    assert first is not None and list(first["id"]) == ["a0", "a1"]
    assert set(first["model_version"]) == {"1"}
    second = backend.load(limit=10, model_version="2")
    assert second is not None and list(second["id"]) == ["b0"]
    assert backend.load(limit=10, model_version="3") is None
    everything = backend.load(limit=10)
    assert everything is not None and len(everything) == 3
