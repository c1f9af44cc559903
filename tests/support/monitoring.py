"""Runs of the monitoring pipeline on real captures, shared by the monitoring test files.

Used by tests/pipelines/test_monitoring.py and tests/pipelines/test_cards_render.py
(`from support import monitoring as mf`); the runs are made once per test session and
only when a test asks for them. The unit tests of the stage (tests/model_monitoring/)
use `shadow_store`: labelled captures with a shadow's answers, without a pipeline run.

Production data is made as the system makes it, without a model server: rows from
`common.traffic.sample_requests` (the traffic pipeline's sampler, normal or drifted)
are stored through `inference.capture.CaptureStore` with the true species as the
prediction, then labelled through `backends.local.Local.label` (simulated ground
truth, right with a given probability) or `label_by_id` (`Place` in support/places.py).

The monitored model, `MODEL_NAME`, is registered as the training pipeline's `register`
step does it, in a run that logged its training data with `common.tracking.
log_training_data`: 250 of the dataset's 344 rows, so the reference the pipeline uses
can be told apart from the dataset. Its version carries the `champion` alias, which the
pipeline monitors when nothing serves.

Every scenario has its own place under the session directory (config, capture
database, server state dir; the backend target is a free port of 127.0.0.1 nobody
listens on).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.flows import FlowRequest, FlowResult
from support.paths import LOCAL_CONFIG, MONITORING_FLOW, PENGUINS_CSV
from support.places import Place
from support.state import ensure_experiment, session_directory

MODEL_NAME = "monitoring-tests"
UNREGISTERED_MODEL = "monitoring-tests-unregistered"
REGISTRATION_EXPERIMENT = "monitoring-tests-training"
MONITORING_EXPERIMENT = "monitoring"
TRAINING_ROWS = 250  # of the dataset's 344: the logged training data is not the CSV
LABELLED_ROWS = 300
GOOD_LABELS = 0.9
BAD_LABELS = 0.3

# The shadow scenario: its champion is wrong on one row in five, the shadow on one in
# fifty, and the shadow failed (no answer) on a few rows; `promotion.auto` is on.
SHADOW_VERSION = "9001"  # not registered: the promotion it asks for must be refused
SHADOW_ROWS = 300
SHADOW_FAILED = 10

# Scenarios run in two batches: the second one's history must follow the first's.
FIRST_BATCH = ("empty", "normal", "drifted", "shadow")
SECOND_BATCH = ("low_accuracy", "fail_on_alert")


def project_schema() -> Any:
    from common.config import load_project_configuration
    from common.data import DatasetSchema

    return DatasetSchema.from_config(load_project_configuration(LOCAL_CONFIG)["dataset"])


def penguins() -> Any:
    """The dataset as the pipelines load it in development (cleaned, shuffled with 42)."""
    from common.data import load_dataset

    return load_dataset(PENGUINS_CSV, project_schema(), 42)


# --- the registered model --------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    run_id: str
    training_data: Any  # pandas.DataFrame, as logged


def register_model(name: str = MODEL_NAME) -> RegisteredModel:
    """Register `name` as training.py's `register` step does, with training data."""
    import mlflow

    from model_training.tracking import log_training_data

    class Constant(mlflow.pyfunc.PythonModel):
        """Never loaded here: monitoring reads the version's run, not the model."""

        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return ["Adelie"] * len(model_input)

    schema = project_schema()
    training = penguins().head(TRAINING_ROWS).reset_index(drop=True)
    mlflow.set_tracking_uri(_tracking_uri())
    experiment_id = ensure_experiment(REGISTRATION_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        log_training_data(training, str(PENGUINS_CSV), schema.target)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Constant(),
            registered_model_name=name,
            pip_requirements=["mlflow"],
        )
    version = str(info.registered_model_version)
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", version)
    return RegisteredModel(name, version, run.info.run_id, training)


def _tracking_uri() -> str:
    return os.environ["MLFLOW_TRACKING_URI"]


# --- scenarios -------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One monitoring run: its place (config, database), parameters and result."""

    name: str
    place: Place
    parameters: dict[str, Any]
    result: FlowResult | None = None

    @property
    def run(self) -> Any:
        assert self.result is not None
        return self.result.run

    def task(self, step: str) -> Any:
        assert self.run is not None, f"the {self.name} run did not start"
        return self.run[step].task

    def data(self, step: str = "end") -> Any:
        return self.task(step).data


@dataclass
class MonitoringRuns:
    model: RegisteredModel
    dataset: Any  # pandas.DataFrame, as the pipeline loads it
    scenarios: dict[str, Scenario]

    def __getitem__(self, name: str) -> Scenario:
        return self.scenarios[name]


_RUNS: dict[str, Any] = {}


def _prepare(root: Path) -> MonitoringRuns:
    ensure_experiment(MONITORING_EXPERIMENT)
    model = register_model()
    data = penguins()
    schema = project_schema()

    empty = Place(root / "empty", model_name=UNREGISTERED_MODEL)  # no database at all
    normal = Place(root / "normal", model_name=MODEL_NAME)
    normal.capture(data, schema, LABELLED_ROWS, drift=False, seed=11, version=model.version)
    assert normal.label(GOOD_LABELS) == LABELLED_ROWS
    # Newer predictions without ground truth: monitoring must leave them out.
    normal.capture(data, schema, 40, drift=False, seed=12, version=model.version)

    drifted = Place(root / "drifted", model_name=MODEL_NAME)
    drifted.capture(data, schema, LABELLED_ROWS, drift=True, seed=13, version=model.version)
    assert drifted.label(GOOD_LABELS) == LABELLED_ROWS

    low = Place(root / "low_accuracy", model_name=MODEL_NAME)
    # Older, all right; then the newest LABELLED_ROWS with poor labels: `--samples`
    # LABELLED_ROWS must look at the newest only.
    old = low.capture(data, schema, 150, drift=False, seed=14, version=model.version)
    assert low.backend().label_by_id(old) == 150
    low.capture(data, schema, LABELLED_ROWS, drift=False, seed=15, version=model.version)
    assert low.label(BAD_LABELS) == LABELLED_ROWS

    shadow = Place(root / "shadow", model_name=MODEL_NAME)
    capture_with_shadow(shadow, data, schema, model.version)

    scenarios = {
        "shadow": Scenario("shadow", shadow, {}),
        "empty": Scenario("empty", empty, {}),
        # --fail-on-alert on healthy data: no alert, so the run must succeed.
        "normal": Scenario("normal", normal, {"fail_on_alert": True}),
        "drifted": Scenario("drifted", drifted, {}),
        "low_accuracy": Scenario("low_accuracy", low, {"samples": LABELLED_ROWS}),
        "fail_on_alert": Scenario("fail_on_alert", drifted, {"fail_on_alert": True}),
    }
    for scenario in scenarios.values():
        scenario.place.write_config()
    _configure(shadow.config, promotion={"auto": True})
    return MonitoringRuns(model, data, scenarios)


def _configure(config: Path, **sections: Any) -> None:
    import yaml

    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, **sections}, sort_keys=False))


def capture_with_shadow(place: Place, data: Any, schema: Any, version: str) -> dict[str, str]:
    """Store and label `SHADOW_ROWS` predictions of normal traffic with a shadow's answers
    (see `SHADOW_VERSION`), as the server stores them; return id -> true species."""
    import uuid

    from common.traffic import sample_requests
    from inference.capture import CaptureStore, ShadowAnswers

    rows = SHADOW_ROWS
    requests = sample_requests(data, schema, rows, drift=False, seed=16)
    truth = data.sample(n=rows, replace=rows > len(data), random_state=16)[schema.target]
    classes = sorted(data[schema.target].unique())

    def wrong(name: str) -> str:
        return classes[(classes.index(name) + 1) % len(classes)]

    champion = [wrong(t) if i % 5 == 0 else t for i, t in enumerate(truth)]
    shadow = [
        None if i < SHADOW_FAILED else wrong(t) if i % 50 == 1 else t for i, t in enumerate(truth)
    ]
    ids = [uuid.uuid4().hex for _ in range(rows)]
    labels = dict(zip(ids, truth, strict=True))
    store = CaptureStore(str(place.database))
    try:
        confidences = [None if answer is None else 0.8 for answer in shadow]
        answers = ShadowAnswers(SHADOW_VERSION, shadow, confidences)
        store.save(ids, requests, champion, [0.9] * rows, version, shadow=answers)
    finally:
        store.close()
    assert place.backend().label_by_id(labels) == rows
    return labels


def monitoring_runs(
    flows_runner: Callable[[dict[str, FlowRequest]], dict[str, FlowResult]],
    *batches: tuple[str, ...],
) -> MonitoringRuns:
    """The scenarios, with the runs of `batches` made (once per session, batch by batch)."""
    if "runs" not in _RUNS:
        _RUNS["runs"] = _prepare(session_directory() / "monitoring-tests")
    runs: MonitoringRuns = _RUNS["runs"]
    for batch in batches:
        if batch == SECOND_BATCH:  # its history follows the first batch's runs
            monitoring_runs(flows_runner, FIRST_BATCH)
        pending = [name for name in batch if runs[name].result is None]
        if not pending:
            continue
        requests = {
            name: FlowRequest(
                MONITORING_FLOW, dict(runs[name].parameters), config=runs[name].place.config
            )
            for name in pending
        }
        for name, result in flows_runner(requests).items():
            runs[name].result = result
    return runs


# --- captures with a shadow's answers, for the stage's unit tests --------------------------

SPECIES = ["Adelie", "Chinstrap", "Gentoo"]


def wrong_species(name: str) -> str:
    """Another species than `name`: a wrong answer."""
    return SPECIES[(SPECIES.index(name) + 1) % len(SPECIES)]


def shadow_store(
    path: Path,
    data: Any,
    rows: int,
    champion_wrong: int,
    shadow_wrong: int,
    shadow_failed: int = 0,
    champion: str = "6",
    shadow: str = "7",
) -> Any:
    """`rows` labelled predictions captured with a shadow's, read back as monitoring does
    (a pandas.DataFrame, newest first), from the capture database at `path`.

    The champion is wrong on its first `champion_wrong` rows, the shadow on its last
    `shadow_wrong`; the shadow did not answer its first `shadow_failed` rows.
    """
    import json
    import uuid

    from backends.local import Local
    from inference.capture import CaptureStore, ShadowAnswers

    sample = data.head(rows)
    target = project_schema().target
    truth = sample[target].tolist()
    champion_answers = [wrong_species(t) if i < champion_wrong else t for i, t in enumerate(truth)]
    shadow_answers = [
        wrong_species(t) if i >= rows - shadow_wrong else t for i, t in enumerate(truth)
    ]
    shadow_answers = [None if i < shadow_failed else a for i, a in enumerate(shadow_answers)]
    ids = [uuid.uuid4().hex for _ in range(rows)]
    store = CaptureStore(str(path))
    try:
        store.save(
            ids,
            json.loads(sample[project_schema().features].to_json(orient="records")),
            champion_answers,
            [0.9] * rows,
            champion,
            shadow=ShadowAnswers(
                shadow, shadow_answers, [None if a is None else 0.8 for a in shadow_answers]
            ),
        )
        store.label(dict(zip(ids, truth, strict=True)))
    finally:
        store.close()
    return Local(config={"database": str(path)}).load(limit=10_000, labeled_only=True)
