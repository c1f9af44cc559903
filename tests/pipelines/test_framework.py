"""End-to-end tests of the pipeline framework as the spec describes it.

A flow written from the spec's "Pipeline Structure Template"
(`flows/template_flow.py`) runs with `metaflow.Runner`: with defaults, with
`--with retry` and every `Pipeline` parameter overridden, and with
`config/sagemaker.yml` (three runs started together, see `template_runs`).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support.flows import FlowRequest, FlowResult, card_text
from support.paths import LOCAL_CONFIG, PENGUINS_CSV, REPO_ROOT, TEMPLATE_FLOW
from support.state import init_tracking_store

from common.config import load_project_configuration

STEPS = ("start", "next_step", "end")
SAGEMAKER_ENVIRONMENT = {
    "BUCKET": "pipeline-tests-bucket",
    "ENDPOINT_NAME": "penguins-under-test",
    "AWS_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def artifact(run: Any, step: str, name: str) -> Any:
    return run[step].task[name].data


@pytest.fixture(scope="module")
def custom_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every other penguin (172 rows), three of them with `sex: "."` (extraneous)."""
    path = tmp_path_factory.mktemp("custom") / "some-penguins.csv"
    data = pd.read_csv(PENGUINS_CSV).iloc[::2].reset_index(drop=True)
    data.loc[[3, 50, 100], "sex"] = "."
    data.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def custom_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("other-tracking")
    uri = f"sqlite:///{directory / 'other.db'}"
    init_tracking_store(uri, directory / "artifacts")
    return uri


@pytest.fixture(scope="module")
def template_runs(flows_runner, custom_dataset: Path, custom_tracking_uri: str) -> dict:
    """Three runs of the template flow, started together: alone, each of these
    one-task-at-a-time graphs would leave a core idle.

    - default: every default;
    - custom: `--with retry`, every Pipeline parameter overridden, and a first
      attempt of `next_step` that fails;
    - sagemaker: `--config project config/sagemaker.yml` with its variables set, and
      `--backend backend.Local` to keep it about the configuration (whether the
      SageMaker backend exists is `test_sagemaker_config_names_an_existing_backend`).
    """
    return flows_runner(
        {
            "default": FlowRequest(TEMPLATE_FLOW),
            "custom": FlowRequest(
                TEMPLATE_FLOW,
                {
                    "backend": "custom_backend.Recording",
                    "dataset": str(custom_dataset),
                    "mlflow_tracking_uri": custom_tracking_uri,
                    "my_param": "custom-value",
                    "fail_first_attempt": True,
                },
                decospecs=["retry"],
            ),
            # The SageMaker backend itself: building it checks its settings and makes
            # no AWS call (clients are made on first use), so nothing leaves the machine.
            "sagemaker": FlowRequest(
                TEMPLATE_FLOW,
                {},
                config=REPO_ROOT / "config" / "sagemaker.yml",
                env=SAGEMAKER_ENVIRONMENT,
            ),
        }
    )


@pytest.fixture(scope="module")
def template_run(template_runs: dict[str, FlowResult]) -> FlowResult:
    result = template_runs["default"]
    assert result.successful, f"The template flow failed:\n{result.describe()}"
    return result


# --- the framework's public API ---------------------------------------------------------


def test_spec_imports_load_no_heavy_library() -> None:
    """The spec's imports work in a fresh process and stay light: every task imports
    them, and a step that needs Keras, MLflow or Evidently imports it itself."""
    from support.flows import python_result

    loaded = python_result(
        "import json, sys\n"
        "from metaflow import FlowSpec\n"
        "from metaflow.user_decorators.user_step_decorator import UserStepDecoratorMeta\n"
        "from common.pipeline import Pipeline, backend, dataset\n"
        "assert issubclass(Pipeline, FlowSpec)\n"
        "assert isinstance(dataset, UserStepDecoratorMeta), type(dataset)\n"
        "assert isinstance(backend, UserStepDecoratorMeta), type(backend)\n"
        "print('LOADED=' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n",
        "LOADED",
    )
    heavy = {"keras", "jax", "tensorflow", "torch", "evidently", "boto3", "mlflow", "sklearn"}
    assert not heavy & set(loaded), sorted(heavy & set(loaded))


# --- a template flow with every default ---------------------------------------------------


def test_template_flow_runs(template_run: FlowResult) -> None:
    run = template_run.run
    assert template_run.returncode == 0
    assert run.successful and run.finished
    assert {step.id for step in run} == set(STEPS)
    assert artifact(run, "start", "mode") == "development"


def test_template_flow_parameters_default_from_config(template_run: FlowResult) -> None:
    seen = artifact(template_run.run, "start", "seen_parameters")
    assert seen == {
        "backend": "backend.Local",
        "dataset": "data/penguins.csv",
        "mlflow_tracking_uri": os.environ["MLFLOW_TRACKING_URI"],
        "my_param": "default-value",
    }
    assert artifact(template_run.run, "start", "dataset_exists") is True


def test_project_config_reaches_the_steps(template_run: FlowResult) -> None:
    expected = load_project_configuration(LOCAL_CONFIG)
    seen = artifact(template_run.run, "start", "seen_project")
    assert seen["project"] == "penguins"
    assert seen["backend"] == expected["backend"]
    assert seen["dataset"] == expected["dataset"]
    assert seen["model"]["name"] == "penguins"
    # @project(name=config_expr("project.project")) on the base class.
    assert any(tag == "project:penguins" for tag in template_run.run.system_tags)


def test_dataset_decorator_loads_cleaned_data(template_run: FlowResult) -> None:
    data = artifact(template_run.run, "start", "data")
    config = load_project_configuration(LOCAL_CONFIG)["dataset"]
    raw = pd.read_csv(PENGUINS_CSV)
    assert isinstance(data, pd.DataFrame)
    assert list(data.columns) == [
        config["target"],
        *config["numeric_features"],
        *config["categorical_features"],
    ]
    assert len(data) == raw[config["target"]].notna().sum()
    assert data[config["target"]].notna().all()
    for column in config["numeric_features"]:
        assert data[column].dtype == "float64", column


def test_backend_decorator_builds_configured_local_backend(template_run: FlowResult) -> None:
    run = template_run.run
    config = load_project_configuration(LOCAL_CONFIG)["backend"]
    assert artifact(run, "next_step", "backend_class") == "backends.local.Local"
    assert artifact(run, "next_step", "backend_config") == config


def test_environment_decorator_from_template(template_run: FlowResult) -> None:
    assert artifact(template_run.run, "next_step", "keras_backend") == "jax"


def test_logger_works_in_every_step(template_run: FlowResult) -> None:
    loggers = artifact(template_run.run, "end", "loggers")
    assert loggers == {step: f"TemplatePipeline.{step}" for step in STEPS}
    for step in STEPS:
        assert f"template-flow logger works in step {step}" in template_run.stdout
    assert "The pipeline finished successfully." in template_run.stdout


def test_standard_decorators_on_every_step(template_run: FlowResult) -> None:
    decorators = {
        step: {name.rpartition(".")[2] for name in names}
        for step, names in artifact(template_run.run, "end", "step_decorators").items()
    }
    assert set(decorators) == set(STEPS)
    for step in STEPS:
        assert {"logging", "mlflow"} <= decorators[step], (step, decorators[step])
    assert {"dataset", "card", "check_settings"} <= decorators["start"]
    assert {"backend", "environment"} <= decorators["next_step"]
    tracking = artifact(template_run.run, "end", "tracking_environment")
    assert tracking == dict.fromkeys(STEPS, os.environ["MLFLOW_TRACKING_URI"])


def test_start_opens_an_mlflow_run(template_run: FlowResult, mlflow_client: Any) -> None:
    run = template_run.run
    mlflow_run = mlflow_client.get_run(artifact(run, "start", "mlflow_run_id"))
    assert mlflow_run.info.run_name == run.id
    assert mlflow_run.info.status == "FINISHED"
    assert artifact(run, "start", "seen_tracking_uri") == os.environ["MLFLOW_TRACKING_URI"]


def test_start_card_is_rendered(template_run: FlowResult) -> None:
    from metaflow.cards import get_cards

    cards = get_cards(template_run.run["start"].task)
    assert len(cards) == 1
    assert cards[0].type == "default"
    content = card_text(cards[0])
    assert f"TemplatePipeline/{template_run.run.id}/start" in content
    assert "Flow Parameters" in content
    assert "'default-value'" in content


# --- --with retry, and every parameter overridden ---------------------------------------


@pytest.fixture(scope="module")
def custom_run(template_runs: dict[str, FlowResult]) -> FlowResult:
    """`--with retry`, every Pipeline parameter overridden, a first attempt that fails.

    One run checks both, to keep the session short: the retry would not hide a
    wrong parameter, and the parameters cannot make a retry succeed.
    """
    result = template_runs["custom"]
    assert result.successful, result.describe()
    return result


def test_with_retry_retries_a_failed_step(custom_run: FlowResult) -> None:
    run = custom_run.run
    decorators = artifact(run, "end", "step_decorators")
    for step in STEPS:
        assert "retry" in decorators[step], (step, decorators[step])
    assert run.successful
    assert run["next_step"].task.current_attempt == 1
    assert run["start"].task.current_attempt == 0
    assert "First attempt fails on purpose" in custom_run.output


def test_parameters_reach_the_steps(
    custom_run: FlowResult, custom_dataset: Path, custom_tracking_uri: str
) -> None:
    run = custom_run.run
    assert artifact(run, "start", "seen_parameters") == {
        "backend": "custom_backend.Recording",
        "dataset": str(custom_dataset),
        "mlflow_tracking_uri": custom_tracking_uri,
        "my_param": "custom-value",
    }
    # --dataset: the data is the 172-row file, not data/penguins.csv; its extraneous
    # values became missing ones.
    data = artifact(run, "start", "data")
    assert len(data) == 172
    assert "." not in set(data["sex"].dropna())
    assert data["sex"].isna().sum() >= 3
    # --backend: @backend built the named class with the config's settings.
    assert artifact(run, "next_step", "backend_class") == "custom_backend.Recording"
    assert (
        artifact(run, "next_step", "backend_config")
        == load_project_configuration(LOCAL_CONFIG)["backend"]
    )
    # --mlflow-tracking-uri: every step, and MLflow itself, use it.
    assert artifact(run, "start", "seen_tracking_uri") == custom_tracking_uri
    assert artifact(run, "end", "tracking_environment") == dict.fromkeys(STEPS, custom_tracking_uri)


def test_tracking_uri_parameter_decides_where_runs_go(
    custom_run: FlowResult, custom_tracking_uri: str, mlflow_client: Any
) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = artifact(custom_run.run, "start", "mlflow_run_id")
    other = mlflow.MlflowClient(custom_tracking_uri)
    assert other.get_run(run_id).info.run_name == custom_run.run.id
    with pytest.raises(MlflowException):
        mlflow_client.get_run(run_id)


# --- config/sagemaker.yml ---------------------------------------------------------------


def test_sagemaker_config_expands_environment_in_the_steps(
    template_runs: dict[str, FlowResult],
) -> None:
    result = template_runs["sagemaker"]
    assert result.successful, result.describe()
    seen = artifact(result.run, "start", "seen_project")
    assert seen["backend"]["module"] == "backend.Sagemaker"
    assert seen["backend"]["data_capture_uri"] == "s3://pipeline-tests-bucket/datastore"
    assert seen["backend"]["ground_truth_uri"] == "s3://pipeline-tests-bucket/ground-truth"
    assert seen["backend"]["target"] == "penguins-under-test"
    assert seen["backend"]["region"] == "eu-west-1"
    # `${MLFLOW_TRACKING_URI:-}` takes the session's store from the environment.
    seen_parameters = artifact(result.run, "start", "seen_parameters")
    assert seen_parameters["mlflow_tracking_uri"] == os.environ["MLFLOW_TRACKING_URI"]
    # The settings reach the backend unchanged.
    assert artifact(result.run, "next_step", "backend_config") == seen["backend"]


# --- shuffling --------------------------------------------------------------------------


def test_development_runs_see_the_same_row_order(
    template_run: FlowResult, training_run: Any
) -> None:
    """Two development runs (two flows, same data and config) shuffle identically."""
    template_data = artifact(template_run.run, "start", "data")
    training_data = training_run["start"].task["data"].data
    pd.testing.assert_frame_equal(template_data, training_data)
    raw = pd.read_csv(PENGUINS_CSV)
    assert template_data["culmen_length_mm"].tolist() != raw["culmen_length_mm"].tolist(), (
        "the rows are not shuffled"
    )


# --- isolation --------------------------------------------------------------------------


def test_runs_write_nothing_into_the_repository(
    template_run: FlowResult, training_run: Any, session_root: Path, mlflow_client: Any
) -> None:
    """Metaflow data, cards and MLflow runs of the tests live in the session directory."""
    for run in (template_run.run, training_run):
        flow = run.parent.id
        assert (session_root / "metaflow" / ".metaflow" / flow / run.id).is_dir()
        assert not (REPO_ROOT / ".metaflow" / flow / run.id).exists()
        assert not (REPO_ROOT / ".metaflow" / "mf.cards" / flow / "runs" / run.id).exists()

        mlflow_run_id = run["start"].task["mlflow_run_id"].data
        artifact_uri = mlflow_client.get_run(mlflow_run_id).info.artifact_uri
        assert artifact_uri.removeprefix("file://").startswith(str(session_root)), artifact_uri
        assert not list(REPO_ROOT.glob(f"mlruns/*/{mlflow_run_id}"))
        assert not list(REPO_ROOT.glob(f"mlartifacts/*/{mlflow_run_id}"))
        if (REPO_ROOT / "mlflow.db").exists():
            with sqlite3.connect(f"file:{REPO_ROOT / 'mlflow.db'}?mode=ro", uri=True) as db:
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
                if "runs" in tables:
                    found = db.execute(
                        "SELECT COUNT(*) FROM runs WHERE run_uuid = ?", (mlflow_run_id,)
                    ).fetchone()[0]
                    assert found == 0


# --- a typo in the config -----------------------------------------------------------------


def test_a_typo_in_the_config_stops_the_run_before_any_task(tmp_path: Path) -> None:
    """As a user runs it: one line names the key, where it is and the valid name."""
    import subprocess
    import sys

    text = LOCAL_CONFIG.read_text(encoding="utf-8")
    assert "  accuracy_threshold:" in text
    config = tmp_path / "typo.yml"
    config.write_text(text.replace("  accuracy_threshold:", "  accuracy_treshold:"))
    process = subprocess.run(
        [sys.executable, str(TEMPLATE_FLOW), "--config", "project", str(config), "run"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = process.stdout + process.stderr
    assert process.returncode != 0, output
    assert "Project configuration error" in output
    expected = "monitoring.accuracy_treshold: unknown setting, did you mean accuracy_threshold?"
    lines = [line.strip() for line in output.splitlines() if expected in line]
    assert len(lines) == 1 and lines[0].startswith(expected), output[-3000:]
    assert "Traceback" not in output
    assert "Task is starting" not in output
