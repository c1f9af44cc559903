"""The Evidently reports of a monitoring run: data summary, data drift, classification.

Functions take plain DataFrames and return Evidently snapshots or plain Python data
(`Outcome`: the tests and figures a report concluded), so the pipeline's steps stay
thin and the reports are testable on their own. `run_reports` runs the three and
`conclusions` turns them into the artifacts users read. Evidently is imported inside
the functions: it costs seconds per process, which the pipeline spends in a process
of its own (`model_monitoring.report_worker`), importing only the part of Evidently
these functions use (`model_monitoring.evidently_import`, which lists those imports).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.data import DatasetSchema
from inference.capture import GROUND_TRUTH, PREDICTION

if TYPE_CHECKING:
    import pandas as pd

    from common.settings import MonitoringSettings

# The three reports of a monitoring run: name → title.
REPORTS = {
    "summary": "Data summary",
    "drift": "Data drift",
    "classification": "Classification quality",
}
NO_DATA = (
    "No production data with ground truth yet: send traffic, attach labels, then run the "
    "monitoring pipeline again."
)


@dataclass(frozen=True)
class Outcome:
    """What one report concluded, as data."""

    tests: list[dict[str, str]]
    values: dict[str, Any]


@dataclass(frozen=True)
class Report:
    """One report of a monitoring run: its self-contained HTML page and its conclusions."""

    html: str
    outcome: Outcome


def sample_rows(data: pd.DataFrame | None, max_rows: int, seed: int = 0) -> pd.DataFrame | None:
    """At most `max_rows` rows: report cost grows with rows, their conclusions barely do."""
    if data is None or len(data) <= max_rows:
        return data
    return data.sample(n=max_rows, random_state=seed).reset_index(drop=True)


def production_frame(data: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Captured rows with the feature columns typed as in training, plus the outcome."""
    frame = data.reindex(columns=[*schema.features, PREDICTION, GROUND_TRUTH]).copy()
    for column in schema.numeric_features:
        frame[column] = frame[column].astype("float64")
    return frame


def _definition(schema: DatasetSchema, labels: Sequence[str] = ()) -> Any:
    """The columns of `schema`; with the `labels` seen, the classification task too."""
    from evidently import DataDefinition

    categorical = list(schema.categorical_features)
    extra = {}
    if labels:
        categorical += [PREDICTION, GROUND_TRUTH]
        extra["classification"] = [_classification_task(labels)]
    return DataDefinition(
        numerical_columns=list(schema.numeric_features), categorical_columns=categorical, **extra
    )


def _classification_task(labels: Sequence[str]) -> Any:
    """Multiclass, but binary with a named positive class when exactly two labels occur:
    Evidently 0.7 then computes binary metrics with `pos_label` 1 and raises KeyError: 1
    on string labels (a window where the model saw two of three classes)."""
    from evidently import BinaryClassification, MulticlassClassification

    if len(set(labels)) == 2:
        return BinaryClassification(
            target=GROUND_TRUTH, prediction_labels=PREDICTION, pos_label=sorted(set(labels))[0]
        )
    return MulticlassClassification(target=GROUND_TRUTH, prediction_labels=PREDICTION)


def _dataset(data: pd.DataFrame, definition: Any) -> Any:
    from evidently import Dataset

    return Dataset.from_pandas(data, data_definition=definition)


def test_results(snapshot: Any) -> list[dict[str, str]]:
    """Every test of a snapshot as {name, status, description}; status SUCCESS/FAIL/..."""
    results = []
    for test in snapshot.dict().get("tests", []):
        status = str(test.get("status", ""))
        results.append(
            {
                "name": str(test.get("name", "")),
                "status": status.rsplit(".", 1)[-1],
                "description": str(test.get("description", "")),
            }
        )
    return results


def summary_report(
    reference: pd.DataFrame, current: pd.DataFrame, schema: DatasetSchema
) -> tuple[Any, Outcome]:
    """Per-column statistics and data-quality tests: missing values, duplicates, ranges.

    Evidently's default tests compare every statistic with the reference within 10%,
    which fails on any sample of another size; these ask what matters: at most half
    of a column missing, at most half the rows duplicated, and numbers (minimum,
    maximum, mean, quartiles) within the training range widened by its span on each
    side. (Evidently 0.7.23 cannot render these presets without tests, so every
    statistic gets one.)
    """
    from evidently import Report
    from evidently.metrics import DuplicatedRowCount
    from evidently.presets import ValueStats
    from evidently.tests import gte, lte

    half = len(current) // 2
    metrics: list[Any] = [DuplicatedRowCount(tests=[lte(half)])]
    for column in schema.features:
        tests: dict[str, Any] = {
            "row_count_tests": [gte(1)],
            "missing_values_count_tests": [lte(half)],
        }
        if column in schema.numeric_features:
            low, high = float(reference[column].min()), float(reference[column].max())
            span = high - low
            within = [gte(low - span), lte(high + span)]
            for statistic in ("min", "max", "mean", "q25", "q50", "q75"):
                tests[f"{statistic}_tests"] = within
            tests["std_tests"] = [gte(0)]
        metrics.append(ValueStats(column=column, **tests))
    snapshot = Report(metrics, include_tests=True).run(
        reference_data=_dataset(reference[schema.features], _definition(schema)),
        current_data=_dataset(current[schema.features], _definition(schema)),
    )
    return snapshot, Outcome(tests=test_results(snapshot), values={})


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: DatasetSchema,
    settings: MonitoringSettings,
) -> tuple[Any, Outcome]:
    """Per-column drift of the inputs against the training data, and dataset drift."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    preset = DataDriftPreset(
        columns=schema.features,
        drift_share=drift_share(len(schema.features)),
        num_method=settings.numeric_drift_method,
        num_threshold=settings.numeric_drift_threshold,
        cat_method=settings.categorical_drift_method,
        cat_threshold=settings.categorical_drift_threshold,
    )
    snapshot = Report([preset], include_tests=True).run(
        reference_data=_dataset(reference[schema.features], _definition(schema)),
        current_data=_dataset(current[schema.features], _definition(schema)),
    )
    tests = test_results(snapshot)
    drifted = drifted_columns(tests, schema.features)
    return snapshot, Outcome(
        tests=tests, values={"drift_detected": bool(drifted), "drifted_columns": drifted}
    )


def drift_share(columns: int) -> float:
    """The share of drifted columns the drift report calls dataset drift: one column.

    One drifted column is an alert, so one is dataset drift in the report too. Not
    1/columns itself, which the report prints as 0.16666666666666666: that rounded down
    to three significant figures, still above 0 and at most 1/columns.
    """
    exact = 1 / columns
    digits = 2 - math.floor(math.log10(exact))
    return math.floor(exact * 10**digits) / 10**digits


def drifted_columns(tests: list[dict[str, str]], columns: list[str]) -> list[str]:
    """Columns whose per-column drift test failed."""
    failed = [t["name"] for t in tests if t["status"] == "FAIL"]
    return [c for c in columns if any(name.endswith(f"column {c}") for name in failed)]


def classification_report(current: pd.DataFrame, schema: DatasetSchema) -> tuple[Any, Outcome]:
    """Quality of the deployed model on production rows that have ground truth."""
    from evidently import Report
    from evidently.presets import ClassificationPreset

    frame = current[[*schema.features, PREDICTION, GROUND_TRUTH]].astype(
        {PREDICTION: str, GROUND_TRUTH: str}
    )
    labels = sorted(set(frame[PREDICTION]) | set(frame[GROUND_TRUTH]))
    snapshot = Report([ClassificationPreset()], include_tests=True).run(
        reference_data=None, current_data=_dataset(frame, _definition(schema, labels))
    )
    accuracy = float((frame[PREDICTION] == frame[GROUND_TRUTH]).mean())
    return snapshot, Outcome(tests=test_results(snapshot), values={"accuracy": accuracy})


def no_data_page(title: str) -> str:
    """The page a report shows when there are no labelled production rows to examine."""
    return f"<html><body><h1>{title}</h1><p>{NO_DATA}</p></body></html>"


def build_report(
    name: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: DatasetSchema,
    settings: MonitoringSettings,
) -> Report:
    """One report of `REPORTS` on rows that exist: its page and its conclusions."""
    if name == "summary":
        snapshot, outcome = summary_report(reference, current, schema)
    elif name == "drift":
        snapshot, outcome = drift_report(reference, current, schema, settings)
    elif name == "classification":
        snapshot, outcome = classification_report(current, schema)
    else:
        raise ValueError(f"Unknown report {name!r}: one of {', '.join(REPORTS)}.")
    return Report(snapshot.get_html_str(as_iframe=False), outcome)


def run_reports(
    reference: pd.DataFrame,
    current: pd.DataFrame | None,
    schema: DatasetSchema,
    settings: MonitoringSettings,
) -> dict[str, Report]:
    """The data summary, data drift and classification reports, by name (see `REPORTS`).

    All three run in the caller's process, so Evidently is imported once, and not at all
    when there are no production rows: then each page says how to get some and the
    reports conclude nothing.
    """
    if current is None or len(current) == 0:
        return {
            name: Report(no_data_page(title), Outcome([], {})) for name, title in REPORTS.items()
        }
    return {name: build_report(name, reference, current, schema, settings) for name in REPORTS}


def failed_tests(reports: dict[str, Report]) -> list[dict[str, str]]:
    """The tests that failed, each with the title of its report (`REPORTS`): the name
    says what was tested, the description what was measured against which condition."""
    return [
        {"report": REPORTS[name], **test}
        for name, report in reports.items()
        for test in report.outcome.tests
        if test["status"] == "FAIL"
    ]


def conclusions(reports: dict[str, Report]) -> dict[str, Any]:
    """What the reports of `run_reports` concluded, by the artifact names users read.

    `tests` holds every report's tests, `failed_tests` those that failed with the title
    of their report; without production rows there are none, no drift and no accuracy.
    """
    summary, drift, classification = (
        reports[name].outcome for name in ("summary", "drift", "classification")
    )
    return {
        "summary_tests": summary.tests,
        "drift_tests": drift.tests,
        "classification_tests": classification.tests,
        "tests": summary.tests + drift.tests + classification.tests,
        "failed_tests": failed_tests(reports),
        "drift_detected": drift.values.get("drift_detected", False),
        "drifted_columns": drift.values.get("drifted_columns", []),
        "accuracy": classification.values.get("accuracy"),
    }
