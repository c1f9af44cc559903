"""A Local backend that notes each `deploy` request, for tests of what reaches a backend.

Pipelines load it with `--backend support.recording_backend.RecordingLocal` when `tests/`
is on PYTHONPATH; each request is appended as a JSON line to `$RECORDED_DEPLOYMENTS`.
It then serves the model as `backends.local.Local` does, without the shadow: the test
is about the request, and serves the same however the shadow is implemented.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from backends.base import ShadowModel
from backends.local import Local

RECORD_VARIABLE = "RECORDED_DEPLOYMENTS"


class RecordingLocal(Local):
    def deploy(self, model_uri: str, model_version: str, shadow: ShadowModel | None = None) -> bool:
        record = {
            "model_uri": model_uri,
            "model_version": str(model_version),
            "shadow": None if shadow is None else asdict(shadow),
        }
        with Path(os.environ[RECORD_VARIABLE]).open("a") as file:
            file.write(json.dumps(record) + "\n")
        return super().deploy(model_uri, model_version)


def recorded(path: Path) -> list[dict[str, Any]]:
    """The requests a RecordingLocal wrote to `path`, in order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]
