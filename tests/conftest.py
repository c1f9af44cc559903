"""The session's isolated state, and the fixtures of tests/support for every test.

Every test session gets one temporary directory holding everything a run writes (see
support/state.py): the Metaflow local datastore and its cards, the Metaflow home, and
the MLflow tracking and registry store with the artifacts of every experiment the tests
use. The environment is set in `pytest_configure`, before any test module imports
Metaflow: Metaflow reads its configuration once, at import time. Runs start from the
repository root, like `uv run src/pipelines/training.py run`, so `config/local.yml` and
`data/penguins.csv` resolve as they do for users.

Tests that run a Metaflow pipeline, a model server or the demo are marked `e2e`
(`uv run pytest -m "not e2e" -n auto` is the fast tier): explicitly, or by using one of the
fixtures in `E2E_FIXTURES`, which start those things.

Under pytest-xdist (`-n auto`, the README's test command) each worker has a session
directory of its own, and the controller's is shared by all of them
(`shared_session_directory()`, for the demo); each test file goes to one worker whole,
and the files in TRAINING_RUN_FILES all to the same one (`pytest_xdist_make_scheduler`).

Set PIPELINE_TESTS_KEEP=1 to keep the directory after the session (its path is printed
in the report header).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from support import demo

# Fixtures are found by name in this module: every test can use these.
from support.aws import moto_server  # noqa: F401
from support.browser import chromium  # noqa: F401
from support.flows import flow_runner, flows_runner, training_run  # noqa: F401
from support.postgres import postgres_cluster  # noqa: F401
from support.sagemaker_setup import fake_model_dir, sagemaker_moto, stubbed_time  # noqa: F401
from support.serving import inference_server, server, serving_models  # noqa: F401
from support.state import (  # noqa: F401
    isolated_environment,
    mlflow_client,
    restore_mlflow_globals,
    session_root,
    shared_session_directory,
    tracking_uri,
)

# Fixtures that run a pipeline or start a model server or PostgreSQL: a test using one is
# end to end.
E2E_FIXTURES = frozenset({
    "flow_runner",
    "flows_runner",
    "training_run",
    "inference_server",
    "server",
    "postgres_cluster",
})  # fmt: skip

# The files whose tests use the session's training run (half a minute of both cores):
# under pytest-xdist they share a worker, which makes the run once.
TRAINING_RUN_FILES = frozenset({
    "tests/common/test_tracking.py",
    "tests/model_training/test_confidence_calibration.py",
    "tests/promotion/test_evidence.py",
    "tests/pipelines/test_framework.py",
    "tests/pipelines/test_monitoring_estimate.py",
    "tests/pipelines/test_scheduling.py",
    "tests/pipelines/test_training.py",
})  # fmt: skip

_ROOT: Path | None = None


def is_controller() -> bool:
    """Whether this is the session's own process, not one of its pytest-xdist workers."""
    return "PYTEST_XDIST_WORKER" not in os.environ


def pytest_configure(config: pytest.Config) -> None:
    global _ROOT
    _ROOT = Path(tempfile.mkdtemp(prefix="pipeline-tests-"))
    os.environ.update(isolated_environment(_ROOT))
    os.environ.update({"PIPELINE_TESTS_ROOT": str(_ROOT), "LOG_LEVEL": "INFO"})
    # xdist starts its workers after this, in this environment: they share this directory.
    if is_controller():
        os.environ["PIPELINE_TESTS_SHARED_ROOT"] = str(_ROOT)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the demo now if a test of it is going to run: it needs minutes and nothing
    of the other tests, which run meanwhile."""
    if session.config.option.collectonly or _ROOT is None:
        return
    if any(item.path.name == "test_demo.py" for item in session.items):
        demo.start_in_background(shared_session_directory())


def pytest_unconfigure(config: pytest.Config) -> None:
    if is_controller():
        demo.stop_background(shared_session_directory())
    if _ROOT is not None and not os.environ.get("PIPELINE_TESTS_KEEP"):
        shutil.rmtree(_ROOT, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> str:
    return f"pipeline runs write to {_ROOT}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e = pytest.mark.e2e
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(e2e)
    unlisted = {
        file_of(item.nodeid)
        for item in items
        if "training_run" in getattr(item, "fixturenames", ())
    } - TRAINING_RUN_FILES
    if unlisted:
        raise pytest.UsageError(
            f"{sorted(unlisted)} use the `training_run` fixture: add them to "
            "TRAINING_RUN_FILES in tests/conftest.py, so that pytest-xdist gives them the "
            "worker that makes the run"
        )


def file_of(nodeid: str) -> str:
    """The file part of a test's node id, as TRAINING_RUN_FILES names it."""
    return nodeid.split("::")[0]


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `-n`: each test file goes to one worker (its module fixtures are made once),
    and the files of TRAINING_RUN_FILES all to the same one (the session's training run
    is made once): xdist's `--dist loadfile`, with that one group of files."""
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = file_of(nodeid)
            return "training_run" if path in TRAINING_RUN_FILES else path

    return Scheduling(config, log)
