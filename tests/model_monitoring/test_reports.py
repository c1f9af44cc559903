"""model_monitoring.reports: the three Evidently reports, on generated data.

Production-like rows come from `common.traffic.sample_requests` over the penguins
dataset, as the traffic pipeline sends them: drawn from the training distribution, or
with the first numeric feature shifted by two standard deviations (`drift=True`).
The thresholds are the configuration's defaults (`common.settings.MonitoringSettings`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset
from common.settings import MonitoringSettings
from common.traffic import DRIFT_STANDARD_DEVIATIONS, drift_column, sample_requests
from inference.capture import GROUND_TRUTH, PREDICTION
from model_monitoring.reports import (
    NO_DATA,
    REPORTS,
    Outcome,
    classification_report,
    conclusions,
    drift_report,
    drift_share,
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


@pytest.mark.parametrize("columns", [1, 2, 3, 6, 7, 9, 150, 1500])
def test_one_drifted_column_is_dataset_drift_with_a_short_threshold(columns: int) -> None:
    share = drift_share(columns)
    assert 0 < share <= 1 / columns and share > 0.99 / columns
    assert len(repr(share)) <= len("0.000666")


def test_the_drift_page_prints_a_short_dataset_drift_threshold(
    data: pd.DataFrame, reference: pd.DataFrame
) -> None:
    snapshot, outcome = drift_report(reference, traffic(data, drift=True, seed=0), SCHEMA, SETTINGS)
    assert outcome.values["drift_detected"] is True
    page = snapshot.get_html_str(as_iframe=False)
    assert f"threshold is {drift_share(len(SCHEMA.features))}" in page
    assert "0.1666666" not in page


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


@pytest.mark.parametrize("classes", [1, 2])
def test_a_window_with_fewer_classes_than_the_model_knows_still_gets_its_report(
    data: pd.DataFrame, classes: int
) -> None:
    # Evidently 0.7 takes two labels for a binary task with positive label 1 and raised
    # KeyError: 1 on string labels; a weak model's window can hold only two classes.
    frame = labelled(data, 0)
    kept = sorted(frame[GROUND_TRUTH].unique())[:classes]
    frame = frame[frame[GROUND_TRUTH].isin(kept)].copy()
    frame.iloc[:5, frame.columns.get_loc(PREDICTION)] = kept[-1]

    snapshot, outcome = classification_report(frame, SCHEMA)

    expected = float((frame[PREDICTION] == frame[GROUND_TRUTH]).mean())
    assert outcome.values["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert outcome.tests and "<html" in snapshot.get_html_str(as_iframe=False).lower()


# --- sampling ------------------------------------------------------------------------------


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
        "failed_tests": [],
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
    # Every failed test, named with its report, says what it measured against what.
    failed = [(test["report"], test["name"]) for test in found["failed_tests"]]
    assert failed == [
        (REPORTS[name], test["name"])
        for name in REPORTS
        for test in reports[name].outcome.tests
        if test["status"] == "FAIL"
    ]
    assert ("Data drift", f"Value Drift for column {shift}") in failed
    drifted = next(t for t in found["failed_tests"] if t["name"].endswith(f"column {shift}"))
    assert "Drift score is" in drifted["description"] and "threshold" in drifted["description"]
    expected = float((current[PREDICTION] == current[GROUND_TRUTH]).mean())
    assert found["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert expected < 1.0
