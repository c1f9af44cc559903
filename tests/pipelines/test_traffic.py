"""The traffic pipeline (src/pipelines/traffic.py) through `metaflow.Runner`.

The pipelines talk to the session's shared model server (`inference_server` in
support/serving.py: a tiny model, real `mlflow models serve` on a free port of
127.0.0.1) through a config written for it. Other tests send it requests too: every
count here is a difference, and each test makes the rows it reads.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support.flows import FlowResult, run_python
from support.paths import LOCAL_CONFIG, PENGUINS_CSV, TRAFFIC_FLOW
from support.places import ModelServer
from support.rows import CLASSES

from backends.local import Local
from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset


@dataclass
class Setup:
    config: Path
    backend: Local
    runner: Any

    def run(self, **parameters: Any) -> FlowResult:
        return self.runner(TRAFFIC_FLOW, parameters, config=self.config)

    def query(self, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.backend.database) as db:
            return db.execute(sql, parameters).fetchall()

    def count(self) -> int:
        return self.query("SELECT COUNT(*) FROM predictions")[0][0]

    def newest(self, rows: int) -> list[tuple[str, float, dict[str, Any]]]:
        """(id, created_at, inputs) of the newest captured rows."""
        found = self.query(
            "SELECT id, created_at, inputs FROM predictions "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?",
            rows,
        )
        return [(row[0], row[1], json.loads(row[2])) for row in found]


@pytest.fixture(scope="module")
def traffic_setup(inference_server: ModelServer, flow_runner: Any) -> Setup:
    """The shared server, and a config that points the traffic pipeline at it."""
    inference_server.ensure_running()
    return Setup(inference_server.write_config(), inference_server.backend(), flow_runner)


@pytest.fixture
def setup(traffic_setup: Setup) -> Setup:
    return traffic_setup


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    schema = DatasetSchema.from_config(load_project_configuration(LOCAL_CONFIG)["dataset"])
    return load_dataset(PENGUINS_CSV, schema, 42)


def test_traffic_mode_sends_samples_in_batches(setup: Setup, dataset: pd.DataFrame) -> None:
    before = setup.count()

    result = setup.run(mode="traffic", samples=30, batch_size=7)

    assert result.successful, result.describe()
    assert setup.count() - before == 30
    assert result.run["start"].task["predictions"].data == 30
    sent = setup.newest(30)
    # One request per batch: the rows of a request share their capture time.
    assert sorted(Counter(created_at for _, created_at, _ in sent).values()) == [2, 7, 7, 7, 7]
    features = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]
    for _, _, inputs in sent:
        assert set(inputs) == {*features, "island", "sex"}  # The target is not sent.
    # Undrifted: the inputs look like the dataset.
    column = "culmen_length_mm"
    values = pd.Series([inputs[column] for _, _, inputs in sent], dtype="float64")
    assert abs(values.mean() - dataset[column].mean()) < dataset[column].std()


def test_drift_shifts_the_first_numeric_feature(setup: Setup, dataset: pd.DataFrame) -> None:
    before = setup.count()

    result = setup.run(mode="traffic", samples=30, batch_size=10, drift=True)

    assert result.successful, result.describe()
    assert setup.count() - before == 30
    sent = [inputs for _, _, inputs in setup.newest(30)]
    drifted = pd.Series([row["culmen_length_mm"] for row in sent], dtype="float64")
    column = dataset["culmen_length_mm"]
    assert drifted.mean() > column.mean() + column.std()
    # Only the first numeric feature moves.
    flipper = pd.Series([row["flipper_length_mm"] for row in sent], dtype="float64")
    assert (
        abs(flipper.mean() - dataset["flipper_length_mm"].mean())
        < dataset["flipper_length_mm"].std()
    )


def test_labels_mode_labels_every_unlabeled_prediction(setup: Setup) -> None:
    setup.backend.invoke(
        [{"island": "Biscoe", "flipper_length_mm": 220.0, "body_mass_g": 5000.0}] * 50
    )
    setup.backend.invoke([{"island": "Dream", "body_mass_g": 3500.0}] * 10)
    unlabeled = setup.query("SELECT id FROM predictions WHERE ground_truth IS NULL")
    assert unlabeled

    result = setup.run(mode="labels", ground_truth_quality=0.8)

    assert result.successful, result.describe()
    assert result.run["start"].task["labeled"].data == len(unlabeled)
    assert setup.query("SELECT COUNT(*) FROM predictions WHERE ground_truth IS NULL") == [(0,)]
    labelled = setup.query(
        "SELECT prediction, ground_truth FROM predictions WHERE id IN "
        f"({','.join('?' * len(unlabeled))})",
        *[row[0] for row in unlabeled],
    )
    assert {truth for _, truth in labelled} <= CLASSES
    agreement = sum(prediction == truth for prediction, truth in labelled) / len(labelled)
    # Right with probability 0.8: with 60 rows, neither mostly wrong nor all right.
    assert 0.5 <= agreement < 1.0, agreement


def test_an_unknown_mode_fails_clearly(setup: Setup) -> None:
    before = setup.count()

    result = setup.run(mode="predict")

    assert not result.successful
    assert "--mode must be one of" in result.output, result.describe()
    assert "'predict'" in result.output
    assert setup.count() == before


def test_labels_by_id_the_documented_way(setup: Setup) -> None:
    """README: `Local(config).label_by_id({"<id>": "Adelie", ...})`, from anywhere."""
    ids = [p["id"] for p in setup.backend.invoke([{"island": "Dream"}] * 3)["predictions"]]
    truth = dict(zip(ids, ["Adelie", "Chinstrap", "Gentoo"], strict=True))
    code = (
        "from common.config import load_project_configuration\n"
        "from backends.local import Local\n"
        f"config = load_project_configuration({str(setup.config)!r})\n"
        f"print('LABELLED', Local(config['backend']).label_by_id({truth!r}))\n"
    )
    other = {"f" * 32: "Adelie"}  # Unknown ids match nothing.
    code += f"print('UNKNOWN', Local(config['backend']).label_by_id({other!r}))\n"

    process = run_python(code)

    assert process.returncode == 0, process.stderr[-3000:]
    assert "LABELLED 3" in process.stdout and "UNKNOWN 0" in process.stdout, process.stdout
    marks = ",".join("?" * len(ids))
    stored = dict(
        setup.query(f"SELECT id, ground_truth FROM predictions WHERE id IN ({marks})", *ids)
    )
    assert stored == truth
