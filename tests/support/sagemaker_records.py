"""Captures as SageMaker writes them, for tests: moto's endpoints write none.

The backend only reads these formats (`backends.sagemaker.formats`); writing them is
what SageMaker does, so it lives here, beside the tests that stand in for it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from backends.sagemaker.formats import CONTENT_TYPE, VARIANT_PREFIX, hour_prefix, join_key


def capture_record(
    event_id: str, when: datetime, rows: list[dict[str, Any]], predictions: list[dict[str, Any]]
) -> str:
    """One JSON Lines record of SageMaker data capture: a request and its answer."""
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": CONTENT_TYPE,
                    "mode": "INPUT",
                    "data": json.dumps({"inputs": rows}),
                    "encoding": "JSON",
                },
                "endpointOutput": {
                    "observedContentType": CONTENT_TYPE,
                    "mode": "OUTPUT",
                    "data": json.dumps({"predictions": predictions}),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {
                "eventId": event_id,
                "inferenceTime": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            },
            "eventVersion": "0",
        }
    )


def capture_key(prefix: str, endpoint: str, version: str, when: datetime, name: str) -> str:
    """Where SageMaker writes a capture file:
    `<prefix>/<endpoint>/version-<N>/yyyy/mm/dd/hh/<mm-ss-mmm>-<name>.jsonl`."""
    moment = when.astimezone(UTC)
    file = f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{name}.jsonl"
    return join_key(prefix, endpoint, f"{VARIANT_PREFIX}{version}", hour_prefix(moment), file)
