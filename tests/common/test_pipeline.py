"""Tests for the plain functions of common.pipeline."""

from __future__ import annotations

import base64
import contextlib
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from support.http_threads import serving_in_thread
from support.paths import LOCAL_CONFIG, PENGUINS_CSV
from support.ports import free_port

from backends.local import Local
from backends.sagemaker import Sagemaker
from common.pipeline import (
    DEVELOPMENT_SEED,
    PipelineError,
    build_backend,
    check_tracking_server,
    dataset_seed,
    resolve_backend_class,
    tracking_uri_without_credentials,
)
from common.secrets import PASSWORD_VARIABLE, TOKEN_VARIABLE, URI_VARIABLE, USERNAME_VARIABLE

# --- resolve_backend_class / build_backend ----------------------------------------------


def test_the_specification_names_resolve() -> None:
    assert resolve_backend_class("backend.Local") is Local
    assert resolve_backend_class("backend.Sagemaker") is Sagemaker


def test_resolve_fully_qualified_backend() -> None:
    assert resolve_backend_class("backends.local.Local") is Local


def test_a_misspelt_backend_lists_the_valid_ones() -> None:
    with pytest.raises(PipelineError) as info:
        resolve_backend_class("backend.Sagemker")
    message = str(info.value)
    assert "Unknown backend 'backend.Sagemker'" in message
    assert "Did you mean backend.Sagemaker?" in message
    assert "Valid backends: backend.Local, backend.Sagemaker" in message
    assert "BackendError" not in message


def test_a_missing_class_in_an_existing_module_is_named() -> None:
    with pytest.raises(PipelineError) as info:
        resolve_backend_class("backends.local.Nonexistent")
    assert "module 'backends.local' has no class 'Nonexistent'" in str(info.value)


def test_unknown_module_says_what_is_valid() -> None:
    with pytest.raises(PipelineError) as info:
        resolve_backend_class("nosuchbackendmodule.Local")
    message = str(info.value)
    assert "module 'nosuchbackendmodule' not found" in message
    assert "backend.Local" in message


def test_unknown_nested_module() -> None:
    with pytest.raises(PipelineError, match="not found"):
        resolve_backend_class("nosuchpackage.sub.Local")


def test_path_without_module() -> None:
    with pytest.raises(PipelineError, match=r"or an importable `module\.Class`"):
        resolve_backend_class("Local")


@pytest.fixture
def module_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Write importable modules with unique names; forget them afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(prefix: str, source: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


def test_resolve_backend_from_any_importable_module(module_factory) -> None:
    name = module_factory(
        "custom_backends",
        "class Custom:\n    def __init__(self, config=None):\n        self.config = config\n",
    )
    backend_class = resolve_backend_class(f"{name}.Custom")
    assert backend_class.__name__ == "Custom"
    assert backend_class.__module__ == name


def test_backend_module_with_missing_dependency_reports_the_dependency(module_factory) -> None:
    name = module_factory("custom_backends", "import zz_not_installed_sdk\n")
    with pytest.raises(ModuleNotFoundError) as info:
        resolve_backend_class(f"{name}.Custom")
    assert info.value.name == "zz_not_installed_sdk"


def test_missing_dependency_whose_name_prefixes_the_module_is_reported(module_factory) -> None:
    # A user's `acmecloud_<id>.py` imports the `acmecloud` SDK, which is not installed.
    # The module exists; the error must be about the missing SDK, like any other
    # missing dependency, not "backend module not found".
    sdk = f"acmecloud{uuid.uuid4().hex[:8]}"
    name = module_factory(sdk, f"import {sdk}\n")
    assert name.startswith(sdk)
    with pytest.raises(ModuleNotFoundError) as info:
        resolve_backend_class(f"{name}.Custom")
    assert info.value.name == sdk


def test_build_backend_passes_settings_as_config(module_factory) -> None:
    name = module_factory(
        "recording_backends",
        "class Recorder:\n    def __init__(self, *, config):\n        self.config = config\n",
    )
    settings = {"module": f"{name}.Recorder", "target": "somewhere", "nested": {"a": 1}}
    instance = build_backend(f"{name}.Recorder", settings)
    assert type(instance).__name__ == "Recorder"
    assert instance.config == settings
    # The backend gets its own mapping: changing it leaves the run's settings alone.
    assert instance.config is not settings
    instance.config["target"] = "changed"
    assert settings["target"] == "somewhere"


def test_build_local_backend() -> None:
    settings = {"module": "backend.Local", "target": "http://127.0.0.1:9999/invocations"}
    instance = build_backend("backend.Local", settings)
    assert isinstance(instance, Local)
    assert instance.config == settings
    assert instance.target == "http://127.0.0.1:9999/invocations"


def test_build_backend_propagates_resolution_errors() -> None:
    with pytest.raises(PipelineError, match=r"Unknown backend 'backend\.Missing'"):
        build_backend("backend.Missing", {})


# --- dataset_seed --------------------------------------------------------------------------


def test_dataset_seed_is_fixed_in_development() -> None:
    assert dataset_seed(False) == DEVELOPMENT_SEED == 42
    assert {dataset_seed(False) for _ in range(5)} == {42}


def test_dataset_seed_varies_in_production() -> None:
    seeds = [dataset_seed(True) for _ in range(10)]
    assert len(set(seeds)) > 1
    assert all(isinstance(seed, int) and 0 <= seed < 2**31 for seed in seeds)
    assert DEVELOPMENT_SEED not in seeds


def test_dataset_seed_orders_the_rows() -> None:
    """Production loads shuffle differently each time; development as seed 42 does."""
    from common.config import load_project_configuration
    from common.data import DatasetSchema, load_dataset

    schema = DatasetSchema.from_config(load_project_configuration(LOCAL_CONFIG)["dataset"])
    first = load_dataset(PENGUINS_CSV, schema, dataset_seed(True))
    second = load_dataset(PENGUINS_CSV, schema, dataset_seed(True))
    assert first["culmen_length_mm"].tolist() != second["culmen_length_mm"].tolist()
    development = load_dataset(PENGUINS_CSV, schema, dataset_seed(False))
    pd.testing.assert_frame_equal(development, load_dataset(PENGUINS_CSV, schema, 42))


# --- check_tracking_server -----------------------------------------------------------------


@pytest.mark.parametrize(
    "uri", ["sqlite:///mlflow.db", "file:///tmp/mlruns", "databricks", "/tmp/mlruns", ""]
)
def test_non_http_uris_are_not_checked(uri: str) -> None:
    assert check_tracking_server(uri, timeout=0.1) is None


# What check_tracking_server asks after /health, which needs no credentials.
CREDENTIALS_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.server.authorizations.append(self.headers.get("Authorization"))  # type: ignore[attr-defined]
        ok = self.server.health and self.path == "/health"  # type: ignore[attr-defined]
        if self.path.startswith("/api/") and self.server.refuse:  # type: ignore[attr-defined]
            self.send_response(401)
            self.end_headers()
            return
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"OK" if ok else b"not found")

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def _serving(health: bool, refuse: bool = False) -> Iterator[ThreadingHTTPServer]:
    """A test server on a free port; it records each request's path and Authorization,
    and answers 401 to API requests when it `refuse`s (credentials)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.paths = []  # type: ignore[attr-defined]
    server.authorizations = []  # type: ignore[attr-defined]
    server.health = health  # type: ignore[attr-defined]
    server.refuse = refuse  # type: ignore[attr-defined]
    with serving_in_thread(server):
        yield server


def _serve(health: bool) -> Iterator[tuple[str, list[str]]]:
    with _serving(health) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.paths  # type: ignore[attr-defined]


@pytest.fixture
def authorizations_server() -> Iterator[tuple[str, list[str | None]]]:
    """A healthy server and the Authorization headers it received, in order."""
    with _serving(health=True) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.authorizations  # type: ignore[attr-defined]


@pytest.fixture
def healthy_server() -> Iterator[tuple[str, list[str]]]:
    yield from _serve(health=True)


@pytest.fixture
def server_without_health() -> Iterator[tuple[str, list[str]]]:
    yield from _serve(health=False)


def test_answering_server_passes(healthy_server) -> None:
    uri, paths = healthy_server
    check_tracking_server(uri + "/", timeout=5)
    assert paths == ["/health", CREDENTIALS_PROBE]


def test_server_answering_with_an_error_status_passes(server_without_health) -> None:
    uri, paths = server_without_health
    check_tracking_server(uri, timeout=5)
    assert paths == ["/health", CREDENTIALS_PROBE]


def test_closed_port_fails_fast_naming_the_uri() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(PipelineError) as info:
        check_tracking_server(uri, timeout=3)
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert f"The MLflow tracking server at {uri} is not reachable" in message
    assert "--mlflow-tracking-uri" in message


def test_silent_server_fails_after_the_timeout() -> None:
    # Accepts connections (the kernel completes the handshake) but never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(PipelineError, match="not reachable"):
            check_tracking_server(uri, timeout=0.5)
        assert time.monotonic() - started < 3


# --- credentials: sent, never shown ------------------------------------------------------

SECRET = "S3cretPw"


@pytest.fixture
def no_tracking_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the variables, and whatever a test sets in them undone after it (set
    first, so that monkeypatch records them)."""
    for name in (USERNAME_VARIABLE, PASSWORD_VARIABLE, TOKEN_VARIABLE, URI_VARIABLE):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def with_credentials(uri: str, credentials: str = f"alice:{SECRET}") -> str:
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{credentials}@{rest}"


def test_credentials_in_the_uri_are_sent_as_basic_authentication(
    authorizations_server, no_tracking_credentials
) -> None:
    uri, authorizations = authorizations_server
    check_tracking_server(with_credentials(uri), timeout=5)
    expected = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert authorizations == [f"Basic {expected}"] * 2


def test_credentials_from_the_environment_are_sent(
    authorizations_server, monkeypatch: pytest.MonkeyPatch, no_tracking_credentials
) -> None:
    uri, authorizations = authorizations_server
    monkeypatch.setenv(TOKEN_VARIABLE, "a-token")
    check_tracking_server(uri, timeout=5)
    assert authorizations == ["Bearer a-token"] * 2


def test_refused_credentials_are_named_as_such_without_the_password(
    no_tracking_credentials,
) -> None:
    with _serving(health=True, refuse=True) as server:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(PipelineError) as info:
            check_tracking_server(with_credentials(uri), timeout=5)
    message = str(info.value)
    assert "refused the credentials (HTTP 401)" in message
    assert f"check {USERNAME_VARIABLE}/{PASSWORD_VARIABLE}" in message
    assert SECRET not in message


def test_an_unreachable_server_is_named_without_its_credentials(no_tracking_credentials) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PipelineError) as info:
        check_tracking_server(with_credentials(uri), timeout=3)
    message = str(info.value)
    assert f"The MLflow tracking server at {with_credentials(uri, '***')} is not reachable" in (
        message
    )
    assert SECRET not in message


def test_the_tracking_uri_parameter_keeps_no_credentials(
    monkeypatch: pytest.MonkeyPatch, no_tracking_credentials
) -> None:
    import os

    bare = tracking_uri_without_credentials(None, None, f"http://alice:{SECRET}@host:5000")
    assert bare == "http://host:5000"
    assert (os.environ[USERNAME_VARIABLE], os.environ[PASSWORD_VARIABLE]) == ("alice", SECRET)
    # Other credentials than the environment's: refused, neither shown.
    with pytest.raises(PipelineError) as info:
        tracking_uri_without_credentials(None, None, "http://bob:Other-Pw@host:5000")
    assert "http://***@host:5000" in str(info.value)
    assert SECRET not in str(info.value) and "Other-Pw" not in str(info.value)


def test_the_tracking_uri_variable_loses_its_credentials_when_the_run_starts(
    monkeypatch: pytest.MonkeyPatch, no_tracking_credentials
) -> None:
    import os

    monkeypatch.setenv(URI_VARIABLE, f"http://alice:{SECRET}@host:5000")
    assert tracking_uri_without_credentials(None, None, "sqlite:///m.db") == "sqlite:///m.db"
    assert os.environ[URI_VARIABLE] == "http://host:5000"
    assert os.environ[PASSWORD_VARIABLE] == SECRET


def test_the_pipelines_cards_are_rendered_once_with_no_live_data_process() -> None:
    from metaflow.plugins.cards.component_serializer import get_card_class

    import common.pipeline

    common.pipeline.render_cards_once()
    for name in common.pipeline.CARD_TYPES_RENDERED_ONCE:
        card_class = get_card_class(name)
        assert card_class is not None, name
        # Metaflow reads this to start a second, live-data process after the render.
        assert card_class.RUNTIME_UPDATABLE is False, name


# --- what the pipelines' libraries may print ------------------------------------------------


def test_pipelines_quiet_pylint_mlflow_info_and_progress_bars_unless_the_user_asks() -> None:
    """A new process importing common.pipeline (as every flow file and task does) gets the
    quiet settings, except where the user's own environment says otherwise."""
    import json
    import os
    import subprocess

    from support.paths import REPO_ROOT, SRC

    from common.pipeline import QUIET_LIBRARIES

    code = (
        "import json, os, common.pipeline as p\n"
        "print(json.dumps({name: os.environ[name] for name in p.QUIET_LIBRARIES}))\n"
    )
    environment = {k: v for k, v in os.environ.items() if k not in QUIET_LIBRARIES}
    environment |= {"PYTHONPATH": str(SRC), "MLFLOW_LOGGING_LEVEL": "INFO"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "METAFLOW_PYLINT": "false",  # click reads it as `--no-pylint`
        "MLFLOW_LOGGING_LEVEL": "INFO",  # the user's
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
