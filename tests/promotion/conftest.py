"""Fixtures of the promotion tests: a registry of their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def client(tmp_path: Path) -> Any:
    """A registry of its own: model `m` with versions 1, 2 and 3 (no artifacts needed)."""
    import mlflow

    from common.tracking import prepare_tracking_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_tracking_store(uri)
    client = mlflow.MlflowClient(uri, uri)
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", source=str(tmp_path / "model"))
    return client
