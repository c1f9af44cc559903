"""backends.local_server: the model server inherits an allow-list of the environment that
starts it, never the pipeline's keys, passwords and tokens. The running server's own
environment is checked end to end in tests/pipelines/test_secrets.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.local_server import (
    SHADOW_PATH_VARIABLE,
    SHADOW_VERSION_VARIABLE,
    LocalServer,
    Prepared,
)

# What a pipeline's environment may hold that no server should see.
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_ACCESS_KEY_ID": "aws-key",
    "AWS_SESSION_TOKEN": "aws-session",
    "MLFLOW_TRACKING_PASSWORD": "tracking-password",
    "MLFLOW_TRACKING_USERNAME": "alice",
    "MLFLOW_TRACKING_TOKEN": "tracking-token",
    "GITHUB_TOKEN": "gh-token",
    "DATABASE_URL": "postgresql://u:db-password@db/x",
}
# What the model and its libraries read.
NEEDED = {
    "HOME": "/home/someone",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp/x",
    "KERAS_BACKEND": "jax",
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": "/somewhere",
    "SERVING_SHADOW_BUDGET_MS": "30",
}


def prepared(tmp_path: Path) -> Prepared:
    return Prepared(
        model_uri="models:/m/1",
        url="http://127.0.0.1:8080/invocations",
        workers=1,
        path=str(tmp_path / "model"),
        environment={"__pyfunc_model_path__": str(tmp_path / "model")},
        seconds=0.1,
    )


def test_the_server_environment_is_an_allow_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**SECRETS, **NEEDED}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(SHADOW_PATH_VARIABLE, "/left/over")
    monkeypatch.setenv(SHADOW_VERSION_VARIABLE, "9")
    explicit = {
        "SERVING_MODEL_VERSION": "1",
        "SERVING_CAPTURE_DATABASE": str(tmp_path / "capture.db"),
        "MLFLOW_TRACKING_URI": "http://tracking.internal:5000",
        "MLFLOW_REGISTRY_URI": "http://tracking.internal:5000",
    }

    environment = LocalServer(tmp_path)._server_environment(prepared(tmp_path), explicit)

    assert not set(SECRETS) & set(environment), sorted(set(SECRETS) & set(environment))
    for value in SECRETS.values():
        assert value not in "\0".join(f"{k}={v}" for k, v in environment.items())
    assert {name: environment.get(name) for name in NEEDED} == NEEDED
    assert environment["SERVING_MODEL_VERSION"] == "1"
    assert environment["__pyfunc_model_path__"] == str(tmp_path / "model")
    assert environment["PATH"]
    # Where the model came from is the pipeline's business; a shadow is only one asked for.
    assert "MLFLOW_TRACKING_URI" not in environment and "MLFLOW_REGISTRY_URI" not in environment
    assert SHADOW_PATH_VARIABLE not in environment and SHADOW_VERSION_VARIABLE not in environment
