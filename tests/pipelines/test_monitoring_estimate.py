"""Accuracy estimated before labels, end to end: deploy, send traffic, monitor, label,
monitor again (issue 23).

The model is the session's training run's version (calibrated at registration),
registered again under a name of this module's own so that deploying it moves no alias
of `penguins` the other training-run tests read. The deployment pipeline serves it at a
place of this module's own and smoke tests it; normal traffic (the traffic pipeline's
sampler) goes through the Local backend, as the traffic pipeline sends it, and the true
species of each row is attached later by id, as real labels arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support import monitoring as mf
from support.flows import FlowResult, card_text
from support.paths import DEPLOYMENT_FLOW, MONITORING_FLOW
from support.places import Place

from common.calibration import CALIBRATION_TAGS, SUPPORT_TAG
from common.traffic import batches, sample_requests
from inference.capture import SMOKE

MODEL_NAME = "estimate-e2e"
TRAFFIC_ROWS = 200
SMOKE_ROWS = 5


@dataclass
class Monitored:
    place: Place
    version: str
    truth: dict[str, str]  # prediction id -> true species
    deployment: FlowResult
    before_labels: FlowResult
    after_labels: FlowResult


def register_copy(training_run: Any, client: Any) -> str:
    """The training run's version registered again as MODEL_NAME, with its tags (its
    calibration stays on the training run, which both versions share)."""
    version = training_run["register"].task["model_version"].data
    original = client.get_model_version("penguins", version)
    if not client.search_registered_models(f"name = '{MODEL_NAME}'"):
        client.create_registered_model(MODEL_NAME)
    copy = client.create_model_version(MODEL_NAME, original.source, original.run_id)
    for key, value in original.tags.items():
        client.set_model_version_tag(MODEL_NAME, copy.version, key, value)
    return str(copy.version)


def send_traffic(place: Place) -> dict[str, str]:
    """TRAFFIC_ROWS rows of normal traffic, ten a request; return id -> true species."""
    data, schema = mf.penguins(), mf.project_schema()
    rows = sample_requests(data, schema, TRAFFIC_ROWS, drift=False, seed=23)
    truth = data.sample(n=TRAFFIC_ROWS, replace=False, random_state=23)[schema.target].tolist()
    backend, ids = place.backend(), []
    for group in batches(rows, 10):
        ids += [answer["id"] for answer in backend.invoke(group)["predictions"]]
    return dict(zip(ids, truth, strict=True))


@pytest.fixture(scope="module")
def monitored(
    training_run: Any, mlflow_client: Any, flow_runner: Any, tmp_path_factory: Any
) -> Iterator[Monitored]:
    version = register_copy(training_run, mlflow_client)
    place = Place(tmp_path_factory.mktemp("estimate"), model_name=MODEL_NAME, workers=1)
    config = place.write_config()
    try:
        deployment = flow_runner(
            DEPLOYMENT_FLOW, {"model_version": version, "smoke_samples": SMOKE_ROWS}, config=config
        )
        assert deployment.successful, deployment.describe()
        truth = send_traffic(place)
        before = flow_runner(MONITORING_FLOW, {}, config=config)
        assert place.backend().label_by_id(truth) == TRAFFIC_ROWS
        after = flow_runner(MONITORING_FLOW, {}, config=config)
        yield Monitored(place, version, truth, deployment, before, after)
    finally:
        place.backend().stop()


def test_the_version_monitored_has_a_stored_calibration(
    monitored: Monitored, mlflow_client: Any
) -> None:
    from model_monitoring.performance_estimate import stored_calibration

    tags = mlflow_client.get_model_version(MODEL_NAME, monitored.version).tags
    assert set(CALIBRATION_TAGS) <= set(tags)
    assert stored_calibration(MODEL_NAME, monitored.version) is not None
    assert SUPPORT_TAG in tags


def test_the_smoke_test_is_stored_as_such_and_left_out(monitored: Monitored) -> None:
    stored = monitored.place.captured_rows()
    smoke = [row for row in stored.values() if row["source"] == SMOKE]
    assert len(smoke) == SMOKE_ROWS
    assert len(stored) == SMOKE_ROWS + TRAFFIC_ROWS
    assert all(row["ground_truth"] is None for row in smoke)
    data = monitored.before_labels.run["end"].task.data
    assert data.rows_used["recent"]["rows"] == TRAFFIC_ROWS
    assert data.rows_used["recent"]["sources"] == {"online": TRAFFIC_ROWS}


def test_before_labels_the_estimate_is_reported(monitored: Monitored, mlflow_client: Any) -> None:
    result = monitored.before_labels
    assert result.successful, result.describe()
    data = result.run["end"].task.data
    assert data.rows == 0 and data.accuracy is None  # no label yet
    estimate = data.estimate
    assert estimate is not None and estimate["calibrated"]
    assert estimate["rows"] == TRAFFIC_ROWS
    assert 0 <= estimate["low"] <= estimate["accuracy"] <= estimate["high"] <= 1
    # Normal traffic: the version's input support (stored at registration) was checked,
    # and about 1 answer in 100 at most lies outside it.
    assert estimate["outside_support"] is not None
    assert estimate["outside_support"] <= 0.03 * TRAFFIC_ROWS
    metrics = mlflow_client.get_run(data.mlflow_monitoring_run_id).data.metrics
    outside_share = estimate["outside_support"] / TRAFFIC_ROWS
    assert metrics["estimate_outside_support_share"] == pytest.approx(outside_share)
    assert metrics["estimated_accuracy"] == pytest.approx(estimate["accuracy"])
    assert metrics["estimated_accuracy_low"] == pytest.approx(estimate["low"])
    assert metrics["estimated_accuracy_high"] == pytest.approx(estimate["high"])
    assert "accuracy" not in metrics
    assert data.rows_used["recent"]["version"] == monitored.version
    assert "Estimated accuracy before labels" in result.output
    card = "".join(card_text(card) for card in _cards(result))
    assert "Accuracy estimated before labels" in card
    assert f"{estimate['outside_support']} of {TRAFFIC_ROWS} answers" in card
    assert "outside the training support, counted as guesses" in card
    assert f"on {TRAFFIC_ROWS} recent answers" in card
    assert f"Estimate: {TRAFFIC_ROWS} rows answered by version {monitored.version}" in card


def test_after_labels_the_realised_accuracy_sits_beside_the_estimate(
    monitored: Monitored,
) -> None:
    result = monitored.after_labels
    assert result.successful, result.describe()
    data = result.run["end"].task.data
    realised = sum(
        row["prediction"] == row["ground_truth"]
        for row in monitored.place.captured_rows(monitored.truth).values()
    ) / len(monitored.truth)
    assert data.rows == TRAFFIC_ROWS
    assert data.accuracy == pytest.approx(realised)
    assert data.estimate["accuracy"] == pytest.approx(realised, abs=0.06)
    earlier = monitored.before_labels.run["end"].task.data.mlflow_monitoring_run_id
    by_run = {run["run"]: run for run in data.estimate_history}
    assert by_run[earlier]["estimated"] is not None and by_run[earlier]["accuracy"] is None
    latest = by_run[data.mlflow_monitoring_run_id]
    assert latest["estimated"] == pytest.approx(data.estimate["accuracy"])
    assert latest["accuracy"] == pytest.approx(realised)
    card = "".join(card_text(card) for card in _cards(result))
    assert "Estimated and realised accuracy" in card
    assert f"{realised:.3f}" in card and f"{data.estimate['accuracy']:.3f}" in card
    assert "data:image/png;base64," in card  # the history chart


def _cards(result: FlowResult) -> list[Any]:
    from metaflow.cards import get_cards

    return list(get_cards(result.run["end"].task))
