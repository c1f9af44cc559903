"""The pure functions of src/common/monitoring.py on generated data.

Production-like rows come from `common.traffic.sample_requests` over the penguins
dataset, as the traffic pipeline sends them: drawn from the training distribution, or
with the first numeric feature shifted by two standard deviations (`drift=True`).
The thresholds are the configuration's defaults (`common.settings.MonitoringSettings`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset
from common.settings import MonitoringSettings, PromotionSettings
from common.traffic import DRIFT_STANDARD_DEVIATIONS, drift_column, sample_requests
from model_monitoring.reports import (
    GROUND_TRUTH,
    NO_DATA,
    PREDICTION,
    REPORTS,
    Outcome,
    alerts,
    classification_report,
    conclusions,
    drift_report,
    figures,
    run_reports,
    sample_rows,
    summary_report,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PENGUINS_CSV = REPO_ROOT / "data" / "penguins.csv"
SETTINGS = MonitoringSettings()
SCHEMA = DatasetSchema.from_config(
    load_project_configuration(REPO_ROOT / "config" / "local.yml")["dataset"]
)
ROWS = 300
SEEDS = (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return load_dataset(PENGUINS_CSV, SCHEMA, 42)


@pytest.fixture(scope="module")
def reference(data: pd.DataFrame) -> pd.DataFrame:
    return data[SCHEMA.features]


def traffic(data: pd.DataFrame, drift: bool, seed: int, rows: int = ROWS) -> pd.DataFrame:
    """Rows as the traffic pipeline sends them, typed as the monitoring pipeline reads them."""
    frame = pd.DataFrame(sample_requests(data, SCHEMA, rows, drift=drift, seed=seed))
    frame = frame[SCHEMA.features]
    for column in SCHEMA.numeric_features:
        frame[column] = frame[column].astype("float64")
    return frame


def by_name(tests: list[dict[str, str]]) -> dict[str, str]:
    return {test["name"]: test["status"] for test in tests}


# --- drift ---------------------------------------------------------------------------------


def test_the_drift_thresholds_are_configured() -> None:
    # The tests below use these; a change of defaults must be a deliberate one.
    assert SETTINGS.numeric_drift_threshold > 0
    assert SETTINGS.categorical_drift_threshold > 0
    assert SETTINGS.numeric_drift_method
    assert SETTINGS.categorical_drift_method


@pytest.mark.parametrize("seed", SEEDS)
def test_traffic_from_the_training_distribution_does_not_drift(
    data: pd.DataFrame, reference: pd.DataFrame, seed: int
) -> None:
    current = traffic(data, drift=False, seed=seed)
    _, outcome = drift_report(reference, current, SCHEMA, SETTINGS)

    failed = [t for t in outcome.tests if t["status"] == "FAIL"]
    assert outcome.values["drift_detected"] is False, failed
    assert outcome.values["drifted_columns"] == []
    assert failed == []
    # One per-column test for every feature, plus the dataset-level test.
    for column in SCHEMA.features:
        assert any(t["name"].endswith(f"column {column}") for t in outcome.tests), column


@pytest.mark.parametrize("seed", SEEDS)
def test_a_shifted_feature_is_detected_and_named(
    data: pd.DataFrame, reference: pd.DataFrame, seed: int
) -> None:
    shifted = drift_column(SCHEMA)
    assert shifted == SCHEMA.numeric_features[0]
    current = traffic(data, drift=True, seed=seed)
    # The shift is what the traffic pipeline promises: two standard deviations.
    unshifted = traffic(data, drift=False, seed=seed)
    assert (current[shifted] - unshifted[shifted]).dropna().round(6).unique().tolist() == [
        round(DRIFT_STANDARD_DEVIATIONS * data[shifted].std(), 6)
    ]

    _, outcome = drift_report(reference, current, SCHEMA, SETTINGS)

    assert outcome.values["drift_detected"] is True
    assert outcome.values["drifted_columns"] == [shifted]
    statuses = by_name(outcome.tests)
    per_column = {
        column: status
        for name, status in statuses.items()
        for column in SCHEMA.features
        if name.endswith(f"column {column}")
    }
    assert per_column == {
        column: ("FAIL" if column == shifted else "SUCCESS") for column in SCHEMA.features
    }


def test_a_shifted_categorical_feature_is_detected(
    data: pd.DataFrame, reference: pd.DataFrame
) -> None:
    current = traffic(data, drift=False, seed=0)
    current["island"] = "Torgersen"  # every penguin from the smallest island

    _, outcome = drift_report(reference, current, SCHEMA, SETTINGS)

    assert outcome.values["drift_detected"] is True
    assert outcome.values["drifted_columns"] == ["island"]


# --- data summary ---------------------------------------------------------------------------


def test_summary_tests_have_names_and_statuses(data: pd.DataFrame, reference: pd.DataFrame) -> None:
    current = traffic(data, drift=False, seed=0)

    snapshot, outcome = summary_report(reference, current, SCHEMA)

    assert outcome.tests, "the summary report has no tests"
    for test in outcome.tests:
        assert set(test) >= {"name", "status"}
        assert test["name"].strip()
        assert test["status"] in {"SUCCESS", "FAIL"}, test
    # Healthy traffic passes every data-quality test.
    assert [t for t in outcome.tests if t["status"] != "SUCCESS"] == []
    names = " ".join(t["name"] for t in outcome.tests)
    assert "Duplicated row count" in names
    for column in SCHEMA.features:
        assert f"Column '{column}' missing values" in names, column
    assert "<html" in snapshot.get_html_str(as_iframe=False).lower()


@pytest.mark.parametrize("column", ["body_mass_g", "island"])
def test_a_mostly_missing_column_fails_its_missing_values_test(
    data: pd.DataFrame, reference: pd.DataFrame, column: str
) -> None:
    current = traffic(data, drift=False, seed=1)
    missing = np.random.default_rng(0).permutation(len(current))[: int(0.8 * len(current))]
    current.loc[current.index[missing], column] = np.nan
    assert current[column].isna().mean() >= 0.8

    _, outcome = summary_report(reference, current, SCHEMA)

    missing_tests = {t["name"]: t["status"] for t in outcome.tests if "missing values" in t["name"]}
    assert len(missing_tests) == len(SCHEMA.features), missing_tests
    for name, status in missing_tests.items():
        expected = "FAIL" if f"'{column}'" in name else "SUCCESS"
        assert status == expected, (name, status)


def test_values_far_outside_the_training_range_fail(
    data: pd.DataFrame, reference: pd.DataFrame
) -> None:
    current = traffic(data, drift=False, seed=2)
    current["flipper_length_mm"] = current["flipper_length_mm"] * 10  # a unit mix-up

    _, outcome = summary_report(reference, current, SCHEMA)

    failed = [t["name"] for t in outcome.tests if t["status"] == "FAIL"]
    assert failed, "values ten times the training range passed every test"
    assert all("flipper_length_mm" in name for name in failed), failed


def test_mostly_duplicated_rows_fail_the_duplicates_test(
    data: pd.DataFrame, reference: pd.DataFrame
) -> None:
    current = traffic(data, drift=False, seed=3)
    current = pd.concat([current.head(50)] * 6, ignore_index=True)

    _, outcome = summary_report(reference, current, SCHEMA)

    duplicates = [t for t in outcome.tests if "Duplicated row count" in t["name"]]
    assert [t["status"] for t in duplicates] == ["FAIL"]


# --- classification quality ---------------------------------------------------------------


def labelled(data: pd.DataFrame, wrong: int, seed: int = 0) -> pd.DataFrame:
    """Dataset rows with predictions: `wrong` of them differ from the ground truth."""
    frame = data[SCHEMA.features].copy()
    frame[GROUND_TRUTH] = data[SCHEMA.target].to_numpy()
    frame[PREDICTION] = frame[GROUND_TRUTH]
    rows = np.random.default_rng(seed).permutation(len(frame))[:wrong]
    classes = sorted(frame[GROUND_TRUTH].unique())
    for row in rows:
        truth = frame.iloc[row][GROUND_TRUTH]
        frame.iloc[row, frame.columns.get_loc(PREDICTION)] = next(c for c in classes if c != truth)
    return frame


@pytest.mark.parametrize("wrong", [0, 37, 200])
def test_accuracy_is_the_share_of_right_predictions(data: pd.DataFrame, wrong: int) -> None:
    frame = labelled(data, wrong)
    expected = float((frame[PREDICTION] == frame[GROUND_TRUTH]).mean())
    assert expected == pytest.approx((len(frame) - wrong) / len(frame))

    snapshot, outcome = classification_report(frame, SCHEMA)

    assert outcome.values["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert isinstance(outcome.values["accuracy"], float)
    for test in outcome.tests:
        assert test["name"].strip() and test["status"] in {"SUCCESS", "FAIL"}, test
    assert "<html" in snapshot.get_html_str(as_iframe=False).lower()


# --- alerts and sampling ----------------------------------------------------------------------


def test_no_alerts_when_all_is_well() -> None:
    assert alerts(False, [], 0.9, 0.7) == []
    assert alerts(False, [], 0.7, 0.7) == []  # at the threshold is not under it
    assert alerts(False, [], None, 0.7) == []  # no accuracy known: nothing to say


def test_drift_alert_names_the_columns() -> None:
    messages = alerts(True, ["culmen_length_mm", "island"], 0.95, 0.7)
    assert len(messages) == 1
    assert "drift" in messages[0].lower()
    assert "culmen_length_mm" in messages[0] and "island" in messages[0]


def test_accuracy_alert_gives_the_accuracy_and_the_threshold() -> None:
    messages = alerts(False, [], 0.3125, 0.7)
    assert len(messages) == 1
    assert "accuracy" in messages[0].lower()
    assert "0.312" in messages[0] or "0.313" in messages[0]
    assert "0.7" in messages[0]


def test_both_alerts_together() -> None:
    messages = alerts(True, ["body_mass_g"], 0.5, 0.7)
    assert len(messages) == 2
    assert any("body_mass_g" in m for m in messages)
    assert any("accuracy" in m.lower() for m in messages)


def test_sample_rows_caps_the_rows(data: pd.DataFrame) -> None:
    numbered = data.assign(row=range(len(data)))

    sampled = sample_rows(numbered, 100)

    assert sampled is not None and len(sampled) == 100
    assert list(sampled.columns) == list(numbered.columns)
    # Rows of the data, each at most once, unchanged.
    assert sampled["row"].is_unique
    pd.testing.assert_frame_equal(
        sampled.reset_index(drop=True),
        numbered.set_index("row", drop=False).loc[sampled["row"]].reset_index(drop=True),
    )
    # Repeatable: the same seed draws the same rows; another seed, others.
    pd.testing.assert_frame_equal(sampled, sample_rows(numbered, 100))
    assert set(sample_rows(numbered, 100, seed=1)["row"]) != set(sampled["row"])


def test_sample_rows_keeps_small_data_and_none(data: pd.DataFrame) -> None:
    assert sample_rows(None, 10) is None
    assert sample_rows(data, len(data)) is data
    assert len(sample_rows(data, len(data) + 1)) == len(data)


# --- the three reports together ---------------------------------------------------------------

EVIDENTLY = "window.drawDashboard("


@pytest.mark.parametrize("current", [None, "empty"])
def test_without_rows_every_page_says_so_and_nothing_is_concluded(
    reference: pd.DataFrame, current: str | None
) -> None:
    rows = None if current is None else reference.iloc[:0]

    reports = run_reports(reference, rows, SCHEMA, SETTINGS)

    assert set(reports) == set(REPORTS)
    for name, report in reports.items():
        assert NO_DATA in report.html and REPORTS[name] in report.html
        assert EVIDENTLY not in report.html
        assert report.outcome == Outcome([], {})
    assert conclusions(reports) == {
        "summary_tests": [],
        "drift_tests": [],
        "classification_tests": [],
        "tests": [],
        "drift_detected": False,
        "drifted_columns": [],
        "accuracy": None,
    }


def test_the_reports_conclude_what_each_report_does_alone(
    data: pd.DataFrame, reference: pd.DataFrame
) -> None:
    current = labelled(data, wrong=30).iloc[:200].reset_index(drop=True)
    shift = drift_column(SCHEMA)
    current[shift] = current[shift] + 3 * reference[shift].std()

    reports = run_reports(reference, current, SCHEMA, SETTINGS)
    found = conclusions(reports)

    for report in reports.values():
        assert EVIDENTLY in report.html and NO_DATA not in report.html
    alone = {
        "summary": summary_report(reference, current, SCHEMA)[1],
        "drift": drift_report(reference, current, SCHEMA, SETTINGS)[1],
        "classification": classification_report(current, SCHEMA)[1],
    }
    for name, outcome in alone.items():
        assert by_name(reports[name].outcome.tests) == by_name(outcome.tests), name
    assert found["tests"] == (
        found["summary_tests"] + found["drift_tests"] + found["classification_tests"]
    )
    assert found["drift_tests"] == reports["drift"].outcome.tests
    assert found["drift_detected"] is True and found["drifted_columns"] == [shift]
    expected = float((current[PREDICTION] == current[GROUND_TRUTH]).mean())
    assert found["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert expected < 1.0


def test_figures_count_rows_drift_and_failed_tests() -> None:
    tests = [
        {"name": "a", "status": "FAIL", "description": ""},
        {"name": "b", "status": "SUCCESS", "description": ""},
        {"name": "c", "status": "FAIL", "description": ""},
    ]
    assert figures(300, tests, True, ["island"], 0.75) == {
        "rows": 300.0,
        "drift_detected": 1.0,
        "drifted_columns": 1.0,
        "failed_tests": 2.0,
        "accuracy": 0.75,
    }
    # No labelled rows, no accuracy: the metric is left out rather than logged as 0.
    assert figures(0, [], False, [], None) == {
        "rows": 0.0,
        "drift_detected": 0.0,
        "drifted_columns": 0.0,
        "failed_tests": 0.0,
    }


# --- the end card's pieces --------------------------------------------------------------------


def test_the_history_chart_is_a_png_and_none_without_history() -> None:
    from model_monitoring.cards import history_chart

    assert history_chart(pd.DataFrame(), SETTINGS) is None
    history = pd.DataFrame({"metrics.accuracy": [0.9, 0.6], "metrics.drifted_columns": [0.0, 1.0]})
    chart = history_chart(history, SETTINGS)
    assert chart is not None and chart.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("chart", [None, b"\x89PNG fake"])
def test_the_monitoring_summary_shows_alerts_figures_and_the_chart(chart: bytes | None) -> None:
    from metaflow.cards import Image, Markdown, Table

    from model_monitoring.cards import monitoring_summary

    calm = monitoring_summary([], {"rows": 300.0}, chart)
    alarmed = monitoring_summary(["Data drift detected in island."], {"rows": 300.0}, chart)

    assert sum(isinstance(c, Table) for c in calm) == 1
    assert any(isinstance(c, Markdown) and "No alerts" in c._text for c in calm)
    assert any(isinstance(c, Markdown) and "island" in c._text for c in alarmed)
    assert not any(isinstance(c, Markdown) and "No alerts" in c._text for c in alarmed)
    assert sum(isinstance(c, Image) for c in alarmed) == (chart is not None)


# --- the report process (more in test_monitoring_worker.py) ------------------------------------


def test_a_failing_report_raises_with_the_workers_traceback(data: pd.DataFrame) -> None:
    from model_monitoring.reports import ReportError, ReportWorker

    broken = data[SCHEMA.features].drop(columns=["island"]).iloc[:50]
    with ReportWorker() as worker, pytest.raises(ReportError) as raised:
        worker.run(data[SCHEMA.features], broken, SCHEMA, SETTINGS)
    assert "The Evidently reports failed" in str(raised.value)
    assert "island" in str(raised.value) and "Traceback" in str(raised.value)


def test_without_rows_the_worker_is_not_asked_and_is_stopped(reference: pd.DataFrame) -> None:
    from model_monitoring.reports import ReportWorker

    worker = ReportWorker()
    process = worker._process
    reports = worker.run(reference, None, SCHEMA, SETTINGS)
    worker.close()
    assert all(NO_DATA in report.html for report in reports.values())
    assert process is not None and not process.is_alive()


# --- champion and shadow --------------------------------------------------------------------


SPECIES = ["Adelie", "Chinstrap", "Gentoo"]


def wrong(name: str) -> str:
    return SPECIES[(SPECIES.index(name) + 1) % len(SPECIES)]


def shadow_store(
    path: Path,
    data: pd.DataFrame,
    rows: int,
    champion_wrong: int,
    shadow_wrong: int,
    shadow_failed: int = 0,
    champion: str = "6",
    shadow: str = "7",
) -> pd.DataFrame:
    """`rows` labelled predictions captured with a shadow's, read back as monitoring does.

    The champion is wrong on its first `champion_wrong` rows, the shadow on its last
    `shadow_wrong`; the shadow did not answer its first `shadow_failed` rows.
    """
    import uuid

    from backends.local import Local
    from inference.capture import CaptureStore, ShadowAnswers

    sample = data.head(rows)
    truth = sample[SCHEMA.target].tolist()
    champion_answers = [wrong(t) if i < champion_wrong else t for i, t in enumerate(truth)]
    shadow_answers = [wrong(t) if i >= rows - shadow_wrong else t for i, t in enumerate(truth)]
    shadow_answers = [None if i < shadow_failed else a for i, a in enumerate(shadow_answers)]
    ids = [uuid.uuid4().hex for _ in range(rows)]
    store = CaptureStore(str(path))
    try:
        store.save(
            ids,
            json.loads(sample[SCHEMA.features].to_json(orient="records")),
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


def test_the_shadow_is_compared_on_the_rows_it_answered(data: pd.DataFrame, tmp_path: Path) -> None:
    from model_monitoring.reports import shadow_comparison

    captured = shadow_store(tmp_path / "c.db", data, 250, 30, 10, shadow_failed=5)
    comparison = shadow_comparison(captured)
    assert comparison is not None
    assert (comparison.champion_version, comparison.shadow_version) == ("6", "7")
    assert (comparison.rows, comparison.missing, comparison.left_out) == (250, 5, 0)
    paired = comparison.comparison
    # Of the 245 answered rows the champion is wrong on 25 (its first 30 less the 5
    # unanswered), the shadow on 10, never the same ones.
    assert paired.rows == 245
    assert paired.champion_accuracy == pytest.approx(220 / 245)
    assert paired.challenger_accuracy == pytest.approx(235 / 245)
    assert (paired.champion_only, paired.challenger_only) == (10, 25)
    assert comparison.classes == SPECIES
    assert sum(map(sum, comparison.champion_confusion)) == 245
    diagonal = sum(comparison.shadow_confusion[i][i] for i in range(3))
    assert diagonal == 235
    assert comparison.as_dict()["paired"]["p_value"] == pytest.approx(paired.p_value)


def test_rows_without_a_shadow_give_no_comparison(data: pd.DataFrame, tmp_path: Path) -> None:
    from backends.local import Local
    from inference.capture import CaptureStore
    from model_monitoring.reports import challenger_finding, shadow_comparison, shadow_figures

    path = tmp_path / "plain.db"
    store = CaptureStore(str(path))
    store.save(["a"], [{"island": "Dream"}], ["Adelie"], [0.9], "6")
    store.label({"a": "Adelie"})
    store.close()
    captured = Local(config={"database": str(path)}).load(labeled_only=True)
    assert shadow_comparison(captured) is None
    assert shadow_comparison(None) is None
    assert challenger_finding(None, PromotionSettings()) is None
    assert shadow_figures(None, None) == {}


def test_only_the_newest_pair_of_versions_is_compared(data: pd.DataFrame, tmp_path: Path) -> None:
    from model_monitoring.reports import shadow_comparison

    path = tmp_path / "c.db"
    shadow_store(path, data, 40, 0, 40, shadow="5")  # an earlier shadow
    captured = shadow_store(path, data.iloc[40:], 60, 6, 0, shadow="7")
    comparison = shadow_comparison(captured)
    assert comparison.shadow_version == "7"
    assert (comparison.rows, comparison.left_out) == (60, 40)
    assert comparison.comparison.challenger_accuracy == 1.0


@pytest.mark.parametrize(
    ("settings", "better", "reason"),
    [
        ({}, True, "gain +0.060 meets"),
        ({"min_gain": 0.1}, False, "under the required +0.100"),
        ({"max_p_value": 0.05}, True, "meets"),
        ({"max_p_value": 0.0001}, False, "not under max_p_value"),
        ({"min_rows": 500}, False, "only 250 paired labelled rows; promotion.min_rows is 500"),
    ],
)
def test_the_finding_follows_the_promotion_rule(
    data: pd.DataFrame, tmp_path: Path, settings: dict, better: bool, reason: str
) -> None:
    from model_monitoring.reports import challenger_finding, shadow_comparison, shadow_figures

    # Champion wrong on 20 rows, shadow on 5: 0.92 against 0.98, p ~ 0.004.
    comparison = shadow_comparison(shadow_store(tmp_path / "c.db", data, 250, 20, 5))
    finding = challenger_finding(comparison, PromotionSettings(**settings))
    assert finding["challenger_better"] is better
    assert reason in finding["reason"]
    assert finding["summary"].startswith("challenger v7 0.980 vs champion v6 0.920 on 250 rows")
    assert ("challenger is better" in finding["summary"]) is better
    metrics = shadow_figures(comparison, finding)
    assert metrics["challenger_better"] == float(better)
    assert metrics["shadow_accuracy"] == pytest.approx(0.98)
    assert metrics["shadow_difference"] == pytest.approx(0.06)


def test_a_shadow_that_answered_nothing_is_not_better(data: pd.DataFrame, tmp_path: Path) -> None:
    from model_monitoring.reports import challenger_finding, shadow_comparison, shadow_figures

    comparison = shadow_comparison(shadow_store(tmp_path / "c.db", data, 20, 5, 0, 20))
    assert comparison.comparison is None and comparison.missing == 20
    finding = challenger_finding(comparison, PromotionSettings())
    assert finding["challenger_better"] is False
    assert "answered none of the 20" in finding["reason"]
    assert shadow_figures(comparison, finding) == {
        "shadow_rows": 20.0,
        "shadow_missing": 20.0,
        "challenger_better": 0.0,
    }


def test_the_card_section_shows_both_models_the_finding_and_the_matrices(
    data: pd.DataFrame, tmp_path: Path
) -> None:
    from metaflow.cards import Markdown, Table

    from model_monitoring.reports import challenger_finding, shadow_comparison, shadow_section

    comparison = shadow_comparison(shadow_store(tmp_path / "c.db", data, 250, 20, 5))
    finding = challenger_finding(comparison, PromotionSettings())
    components = shadow_section(comparison.as_dict(), finding)
    text = "\n".join(c._text for c in components if isinstance(c, Markdown))
    assert "Champion v6 and shadow v7" in text
    assert "FINDING: the challenger is better" in text
    assert "McNemar" in text
    tables = [c for c in components if isinstance(c, Table)]
    assert len(tables) == 2
    assert shadow_section(None, None) == []


def test_promotion_is_asked_only_for_a_better_shadow_with_auto_on() -> None:
    from model_monitoring.reports import promotion_decision

    better = {"challenger_better": True, "shadow_version": "7", "reason": "gain"}
    worse = {**better, "challenger_better": False, "reason": "gain -0.1 is under"}
    assert promotion_decision(better, auto=True) == (
        True,
        "shadow v7 is better: asking to promote it",
    )
    promote, reason = promotion_decision(better, auto=False)
    assert not promote and "promotion.auto: true" in reason and "--model-version 7" in reason
    promote, reason = promotion_decision(worse, auto=True)
    assert not promote and "not better: gain -0.1 is under" in reason
    assert promotion_decision(None, auto=True)[0] is False


def test_the_promotion_command_runs_the_deployment_pipeline_on_the_shadow() -> None:
    import sys

    from model_monitoring.reports import promotion_command, run_promotion

    command = promotion_command(
        "src/pipelines/deployment.py",
        "/tmp/project.yml",
        "7",
        {"backend": "backend.Local", "dataset": "", "mlflow-tracking-uri": "sqlite:///m.db"},
    )
    assert command == [
        sys.executable,
        "src/pipelines/deployment.py",
        "--config",
        "project",
        "/tmp/project.yml",
        "run",
        "--model-version",
        "7",
        "--backend",
        "backend.Local",
        "--mlflow-tracking-uri",
        "sqlite:///m.db",
    ]
    # What `run_promotion` reports, on real processes standing in for the pipeline.
    done = run_promotion([sys.executable, "-c", "print('deployed')"])
    assert (done["returncode"], done["output"]) == (0, "deployed")
    refused = run_promotion([sys.executable, "-c", "import sys; sys.exit('not promoted')"])
    assert refused["returncode"] == 1 and "not promoted" in refused["output"]
    missing = run_promotion(["/nonexistent/python"])
    assert missing["returncode"] is None and "nonexistent" in missing["output"]
