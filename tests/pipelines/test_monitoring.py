"""The monitoring pipeline (src/pipelines/monitoring.py) through `metaflow.Runner`.

Production data lives in real SQLite capture databases filled through the project's own
store and backend (see monitoring_fixtures.py): none at all, 300 labelled rows of normal
traffic, 300 of drifted traffic (first numeric feature + 2 standard deviations), and 300
with poor labels behind 150 older good ones. The thresholds are config/local.yml's.

Runs are shared: the first batch (no data, normal, drifted) runs together, then the
second (low accuracy, drifted with --fail-on-alert), whose MLflow history follows the
first's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from support import monitoring as mf
from support.flows import card_text

from common.config import load_project_configuration
from common.traffic import drift_column

# The three reports are HTML cards of `start`, by id.
REPORT_CARDS = ("data_summary", "data_drift", "classification")
NO_DATA = "No production data with ground truth yet"
EVIDENTLY = "window.drawDashboard("
SETTINGS = load_project_configuration(mf.LOCAL_CONFIG)["monitoring"]
SHIFTED = drift_column(mf.project_schema())


@pytest.fixture(scope="module")
def first(flows_runner: Callable[..., Any]) -> mf.MonitoringRuns:
    return mf.monitoring_runs(flows_runner, mf.FIRST_BATCH)


@pytest.fixture(scope="module")
def second(flows_runner: Callable[..., Any]) -> mf.MonitoringRuns:
    return mf.monitoring_runs(flows_runner, mf.FIRST_BATCH, mf.SECOND_BATCH)


def successful(scenario: mf.Scenario) -> mf.Scenario:
    assert scenario.result is not None
    assert scenario.result.successful, (
        f"the {scenario.name} run failed:\n{scenario.result.describe()}"
    )
    return scenario


def cards(scenario: mf.Scenario, step: str, card_id: str | None = None) -> list[Any]:
    from metaflow.cards import get_cards

    found = list(get_cards(scenario.task(step), id=card_id))
    assert found, f"the {step} step of the {scenario.name} run has no card {card_id or ''}"
    return found


def html_card(scenario: mf.Scenario, card_id: str) -> str:
    """The HTML of a report's card, which must be an HTML card, not an error card."""
    found = cards(scenario, "start", card_id)
    assert [card.type for card in found] == ["html"], [card.type for card in found]
    html = found[0].get()
    assert "no html specified" not in html
    assert "Card Render Failed" not in html
    return html


def end_card(scenario: mf.Scenario) -> str:
    return "".join(card_text(card) for card in cards(scenario, "end"))


def check_outcome_artifacts(data: Any) -> None:
    """The conclusions are data, of the promised types."""
    assert isinstance(data.tests, list)
    for test in data.tests:
        assert isinstance(test, dict) and {"name", "status"} <= set(test), test
        assert test["name"] and test["status"] in {"SUCCESS", "FAIL"}, test
    assert isinstance(data.drift_detected, bool)
    assert isinstance(data.drifted_columns, list)
    assert isinstance(data.rows, int)
    assert isinstance(data.alerts, list)


# --- no production data ----------------------------------------------------------------------


def test_without_production_data_the_run_succeeds(first: mf.MonitoringRuns) -> None:
    scenario = successful(first["empty"])
    assert not scenario.place.database.exists()
    data = scenario.data()
    check_outcome_artifacts(data)
    assert data.rows == 0
    assert data.tests == []
    assert data.drift_detected is False and data.drifted_columns == []
    assert data.accuracy is None
    assert data.alerts == []
    assert data.monitored_version is None  # nothing registered under that name


@pytest.mark.parametrize("scenario", ["empty", "normal"])
def test_start_has_one_html_card_per_report(first: mf.MonitoringRuns, scenario: str) -> None:
    found = cards(successful(first[scenario]), "start")
    assert sorted((card.id, card.type) for card in found) == sorted(
        (card_id, "html") for card_id in REPORT_CARDS
    )


def test_the_run_is_two_steps(first: mf.MonitoringRuns) -> None:
    # Evidently and MLflow are imported by one task, not one per report.
    run = successful(first["normal"]).run
    assert sorted(step.id for step in run) == ["end", "start"]


@pytest.mark.parametrize("card_id", REPORT_CARDS)
def test_without_production_data_each_card_says_so(first: mf.MonitoringRuns, card_id: str) -> None:
    html = html_card(successful(first["empty"]), card_id)
    assert NO_DATA in html
    assert EVIDENTLY not in html


def test_without_a_registered_model_the_reference_is_the_dataset(
    first: mf.MonitoringRuns,
) -> None:
    reference = successful(first["empty"]).data("start").reference
    expected = first.dataset[mf.project_schema().features]
    pd.testing.assert_frame_equal(
        reference.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )


# --- normal traffic --------------------------------------------------------------------------


def test_the_reference_is_the_training_data_logged_with_the_model(
    first: mf.MonitoringRuns,
) -> None:
    scenario = successful(first["normal"])
    assert scenario.data().monitored_version == first.model.version
    reference = scenario.data("start").reference
    features = mf.project_schema().features
    assert len(reference) == mf.TRAINING_ROWS != len(first.dataset)
    pd.testing.assert_frame_equal(
        reference.reset_index(drop=True),
        first.model.training_data[features].reset_index(drop=True),
        check_dtype=False,
    )


def test_normal_traffic_raises_no_alert(first: mf.MonitoringRuns) -> None:
    # Run with --fail-on-alert: it succeeds only because nothing was raised.
    scenario = successful(first["normal"])
    data = scenario.data()
    check_outcome_artifacts(data)
    assert data.drift_detected is False, data.drifted_columns
    assert data.drifted_columns == []
    assert data.alerts == []
    assert "ALERT" not in scenario.result.output


def test_normal_traffic_uses_only_labelled_rows(first: mf.MonitoringRuns) -> None:
    scenario = successful(first["normal"])
    data = scenario.data()
    # 300 labelled rows; the 40 newer unlabelled ones are left out (default --samples 500).
    assert data.rows == mf.LABELLED_ROWS
    assert isinstance(data.accuracy, float)
    assert data.accuracy == pytest.approx(scenario.place.accuracy(mf.LABELLED_ROWS), abs=1e-9)
    assert data.accuracy >= SETTINGS["accuracy_threshold"]


def test_every_report_contributes_tests(first: mf.MonitoringRuns) -> None:
    data = successful(first["normal"]).data()
    names = [test["name"] for test in data.tests]
    assert any("missing values" in name for name in names)  # data summary
    assert any("Duplicated row count" in name for name in names)
    for column in mf.project_schema().features:  # data drift, one per column
        assert any(name.endswith(f"column {column}") for name in names), column
    assert data.classification_tests, "the classification report has no tests"
    assert len(data.tests) == len(data.summary_tests) + len(data.drift_tests) + len(
        data.classification_tests
    )
    assert [t for t in data.drift_tests if t["status"] == "FAIL"] == []


@pytest.mark.parametrize("card_id", REPORT_CARDS)
def test_normal_traffic_cards_hold_evidently_reports(
    first: mf.MonitoringRuns, card_id: str
) -> None:
    html = html_card(successful(first["normal"]), card_id)
    assert NO_DATA not in html
    assert EVIDENTLY in html  # the report's data, drawn by Evidently's script
    assert len(html) > 100_000  # the self-contained report, scripts included


def test_normal_run_is_recorded_in_mlflow(first: mf.MonitoringRuns, mlflow_client: Any) -> None:
    scenario = successful(first["normal"])
    data = scenario.data()
    run = mlflow_client.get_run(data.mlflow_monitoring_run_id)
    experiment = mlflow_client.get_experiment(run.info.experiment_id)
    assert experiment.name == SETTINGS["experiment"] == "monitoring"
    assert run.data.tags["model_name"] == mf.MODEL_NAME
    assert run.data.tags["model_version"] == first.model.version
    metrics = run.data.metrics
    assert metrics["rows"] == mf.LABELLED_ROWS
    assert metrics["accuracy"] == pytest.approx(data.accuracy)
    assert metrics["drift_detected"] == 0
    # The run can be found the way the history is searched.
    found = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.model_name = '{mf.MODEL_NAME}' "
        f"and tags.model_version = '{first.model.version}'",
    )
    assert run.info.run_id in [r.info.run_id for r in found]


def test_normal_end_card_shows_no_alert_and_the_history(first: mf.MonitoringRuns) -> None:
    content = end_card(successful(first["normal"]))
    assert "No alerts" in content
    assert "ALERTS" not in content
    assert "History" in content
    assert "data:image/png;base64," in content


# --- drifted traffic -------------------------------------------------------------------------


def test_drifted_traffic_raises_a_drift_alert(first: mf.MonitoringRuns) -> None:
    scenario = successful(first["drifted"])  # without --fail-on-alert the run succeeds
    data = scenario.data()
    check_outcome_artifacts(data)
    assert data.rows == mf.LABELLED_ROWS
    assert data.drift_detected is True
    assert data.drifted_columns == [SHIFTED]
    assert len(data.alerts) == 1, data.alerts  # the labels are good: no accuracy alert
    assert "drift" in data.alerts[0].lower() and SHIFTED in data.alerts[0]
    failed = [t["name"] for t in data.drift_tests if t["status"] == "FAIL"]
    assert any(name.endswith(f"column {SHIFTED}") for name in failed), failed


def test_drifted_traffic_alert_is_in_the_log_and_the_card(first: mf.MonitoringRuns) -> None:
    scenario = successful(first["drifted"])
    alert = scenario.data().alerts[0]
    assert f"ALERT: {alert}" in scenario.result.output
    content = end_card(scenario)
    assert "ALERTS" in content and alert in content


def test_drifted_run_is_recorded_in_mlflow(first: mf.MonitoringRuns, mlflow_client: Any) -> None:
    data = successful(first["drifted"]).data()
    run = mlflow_client.get_run(data.mlflow_monitoring_run_id)
    assert run.data.metrics["drift_detected"] == 1
    assert run.data.metrics["drifted_columns"] == 1
    assert run.data.tags["alert"] == "True"


def test_fail_on_alert_fails_the_run_on_drift(second: mf.MonitoringRuns) -> None:
    scenario = second["fail_on_alert"]
    result = scenario.result
    assert result is not None
    assert result.status == "failed", result.describe()
    assert result.returncode not in (0, None)
    output = result.output
    assert "ALERT" in output, result.describe()
    assert "drift" in output.lower() and SHIFTED in output, result.describe()
    assert "Monitoring raised alerts" in output, result.describe()
    # The figures were still recorded before the run failed.
    record = scenario.data("start")
    assert record.drift_detected is True
    assert record.drifted_columns == [SHIFTED]


# --- poor labels and history -----------------------------------------------------------------


def test_low_accuracy_raises_an_accuracy_alert(second: mf.MonitoringRuns) -> None:
    scenario = successful(second["low_accuracy"])
    data = scenario.data()
    check_outcome_artifacts(data)
    # --samples 300: only the newest 300 labelled rows, not the 150 older good ones.
    assert data.rows == mf.LABELLED_ROWS
    assert data.accuracy == pytest.approx(scenario.place.accuracy(mf.LABELLED_ROWS), abs=1e-9)
    assert data.accuracy < SETTINGS["accuracy_threshold"]
    assert data.drift_detected is False, data.drifted_columns
    assert len(data.alerts) == 1, data.alerts
    assert "accuracy" in data.alerts[0].lower()
    assert f"{data.accuracy:.3f}" in data.alerts[0]
    assert f"ALERT: {data.alerts[0]}" in scenario.result.output


def test_a_second_run_adds_to_the_history(
    first: mf.MonitoringRuns, second: mf.MonitoringRuns
) -> None:
    earlier = successful(first["normal"]).data()
    later = successful(second["low_accuracy"]).data()
    assert len(later.history) > len(earlier.history) >= 1
    history_ids = later.history["run_id"].tolist()
    # Oldest first; this run last.
    assert history_ids[-1] == later.mlflow_monitoring_run_id
    assert earlier.mlflow_monitoring_run_id in history_ids
    assert history_ids.index(earlier.mlflow_monitoring_run_id) < len(history_ids) - 1
    assert later.history["metrics.accuracy"].iloc[-1] == pytest.approx(later.accuracy)
    assert set(later.history["tags.model_name"]) == {mf.MODEL_NAME}


def test_the_end_card_draws_the_history_with_the_alert(second: mf.MonitoringRuns) -> None:
    scenario = successful(second["low_accuracy"])
    content = end_card(scenario)
    assert "History" in content
    assert "data:image/png;base64," in content
    assert "ALERTS" in content and "accuracy" in content


# --- a shadow beside the champion ----------------------------------------------------------------


def test_the_shadow_is_compared_with_the_champion_on_the_same_rows(
    first: mf.MonitoringRuns,
) -> None:
    from promotion.rule import compare_paired

    scenario = successful(first["shadow"])
    data = scenario.data()
    stored = [r for r in scenario.place.captured_rows().values() if r["shadow_prediction"]]
    expected = compare_paired(
        [r["ground_truth"] for r in stored],
        [r["prediction"] for r in stored],
        [r["shadow_prediction"] for r in stored],
    )
    comparison = data.shadow_comparison
    assert comparison["shadow_version"] == mf.SHADOW_VERSION
    assert comparison["champion_version"] == first.model.version
    assert (comparison["rows"], comparison["missing"]) == (mf.SHADOW_ROWS, mf.SHADOW_FAILED)
    assert comparison["paired"] == pytest.approx(expected.figures())
    assert expected.rows == mf.SHADOW_ROWS - mf.SHADOW_FAILED
    assert expected.challenger_accuracy > expected.champion_accuracy
    # The served model's own figures are the reports' as ever: every labelled row.
    assert data.rows == mf.SHADOW_ROWS
    assert data.accuracy == pytest.approx(scenario.place.accuracy(mf.SHADOW_ROWS))


def test_a_better_shadow_is_a_finding_not_an_alert(first: mf.MonitoringRuns) -> None:
    scenario = successful(first["shadow"])
    data = scenario.data()
    assert data.alerts == []
    finding = data.challenger_finding
    assert finding["challenger_better"] is True, finding
    assert finding["shadow_version"] == mf.SHADOW_VERSION
    assert finding["summary"].startswith(f"challenger v{mf.SHADOW_VERSION} ")
    assert "challenger is better" in finding["summary"]
    assert "ALERT" not in scenario.result.output
    content = end_card(scenario)
    assert f"and shadow v{mf.SHADOW_VERSION}" in content
    assert "FINDING: the challenger is better" in content
    assert "champion: Adelie" in content and "shadow: Gentoo" in content  # the matrices
    # Without shadow captures, neither is there.
    normal = successful(first["normal"]).data()
    assert normal.shadow_comparison is None and normal.challenger_finding is None
    assert "shadow v" not in end_card(first["normal"])


def test_the_comparison_is_recorded_in_mlflow(first: mf.MonitoringRuns, mlflow_client: Any) -> None:
    import json

    data = successful(first["shadow"]).data()
    run = mlflow_client.get_run(data.mlflow_monitoring_run_id)
    paired = data.shadow_comparison["paired"]
    assert run.data.tags["shadow_version"] == mf.SHADOW_VERSION
    assert run.data.tags["challenger_better"] == "True"
    metrics = run.data.metrics
    assert metrics["shadow_accuracy"] == pytest.approx(paired["challenger_accuracy"])
    assert metrics["shadow_champion_accuracy"] == pytest.approx(paired["champion_accuracy"])
    assert metrics["shadow_p_value"] == pytest.approx(paired["p_value"])
    assert metrics["shadow_missing"] == mf.SHADOW_FAILED
    assert metrics["challenger_better"] == 1
    path = mlflow_client.download_artifacts(run.info.run_id, "shadow_comparison.json")
    with open(path) as file:
        recorded = json.load(file)
    assert recorded["finding"] == data.challenger_finding
    assert recorded["shadow_confusion"] == data.shadow_comparison["shadow_confusion"]


def test_with_auto_promotion_the_deployment_pipeline_is_asked(first: mf.MonitoringRuns) -> None:
    # promotion.auto is on: the end step ran the deployment pipeline on the shadow's
    # version, which is not registered, so that run refused and changed nothing, and
    # monitoring still succeeded.
    scenario = successful(first["shadow"])
    promotion = scenario.data().promotion
    command = promotion["command"]
    assert command[command.index("--model-version") + 1] == mf.SHADOW_VERSION
    assert command[command.index("project") + 1] != str(scenario.place.config)  # a copy
    assert promotion["returncode"] not in (0, None), promotion
    assert mf.SHADOW_VERSION in promotion["output"] and mf.MODEL_NAME in promotion["output"]
    assert "did not deploy version" in scenario.result.output
    assert successful(first["normal"]).data().promotion is None
