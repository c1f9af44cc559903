"""model_monitoring.report_worker: the reports in processes of their own.

The reports split between two processes (`parallel_reports`), a worker that serves one
request (`ReportWorker`), and what each says when something fails. That the pages are
those of the usual `import evidently` is tested in test_evidently_import.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import model_monitoring.report_worker as report_worker
from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset
from common.settings import MonitoringSettings
from model_monitoring.report_worker import ReportError, ReportWorker, parallel_reports
from model_monitoring.reports import NO_DATA, REPORTS, Outcome, Report

REPO_ROOT = Path(__file__).resolve().parents[2]
PENGUINS_CSV = REPO_ROOT / "data" / "penguins.csv"
LOCAL_CONFIG = REPO_ROOT / "config" / "local.yml"
SCHEMA = DatasetSchema.from_config(load_project_configuration(LOCAL_CONFIG)["dataset"])
SETTINGS = MonitoringSettings()


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return load_dataset(PENGUINS_CSV, SCHEMA, 42)


@pytest.fixture(scope="module")
def reference(data: pd.DataFrame) -> pd.DataFrame:
    return data[SCHEMA.features]


def rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = load_dataset(PENGUINS_CSV, SCHEMA, 42).dropna().reset_index(drop=True)
    current = (
        data[SCHEMA.features]
        .iloc[:150]
        .assign(
            prediction=data[SCHEMA.target].iloc[:150].to_numpy(),
            ground_truth=data[SCHEMA.target].iloc[::-1].iloc[:150].to_numpy(),
        )
    )
    return data[SCHEMA.features], current


# --- two processes for three reports ------------------------------------------------------


def some_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    reference, current = rows()
    return reference.iloc[:20], current.iloc[:20]


def test_the_reports_split_between_two_processes_and_come_back_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    def fake(name: str, *args: Any) -> Report:
        return Report(f"{name} by {os.getpid()}", Outcome([], {"name": name}))

    monkeypatch.setattr(report_worker, "build_report", fake)
    reports = parallel_reports(*some_rows(), SCHEMA, SETTINGS)

    assert list(reports) == list(REPORTS)
    makers = {name: int(report.html.rsplit(" ", 1)[1]) for name, report in reports.items()}
    assert makers["drift"] == makers["classification"] == os.getpid()
    assert makers["summary"] != os.getpid()  # a child's


def test_a_report_failing_in_the_child_raises_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake(name: str, *args: Any) -> Report:
        if name == "summary":
            raise KeyError("no column 'island'")
        return Report(name, Outcome([], {}))

    monkeypatch.setattr(report_worker, "build_report", fake)
    with pytest.raises(ReportError) as raised:
        parallel_reports(*some_rows(), SCHEMA, SETTINGS)
    message = str(raised.value)
    assert "The Evidently reports failed" in message
    assert "Traceback" in message and "no column 'island'" in message


def test_a_child_that_dies_without_answering_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def fake(name: str, *args: Any) -> Report:
        if name == "summary":
            os._exit(3)
        return Report(name, Outcome([], {}))

    monkeypatch.setattr(report_worker, "build_report", fake)
    with pytest.raises(ReportError, match="summary report ended without an answer"):
        parallel_reports(*some_rows(), SCHEMA, SETTINGS)


def test_without_rows_nothing_is_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def no_fork() -> int:
        raise AssertionError("forked")

    monkeypatch.setattr(os, "fork", no_fork)
    reference, current = some_rows()
    reports = parallel_reports(reference, current.iloc[:0], SCHEMA, SETTINGS)
    assert all(NO_DATA in report.html for report in reports.values())


# --- the worker's requests ------------------------------------------------------------------


def test_a_worker_serves_one_request_and_needs_one() -> None:
    reference, current = some_rows()
    with ReportWorker() as worker:
        with pytest.raises(ReportError, match="Nothing was submitted"):
            worker.result()
        worker.submit(reference, current.iloc[:0], SCHEMA, SETTINGS)
        with pytest.raises(ReportError, match="serves one request"):
            worker.submit(reference, current, SCHEMA, SETTINGS)
        reports = worker.result()
    assert all(NO_DATA in report.html for report in reports.values())


def test_a_worker_whose_answer_is_not_awaited_is_stopped() -> None:
    reference, current = some_rows()
    worker = ReportWorker()
    process = worker._process
    worker.submit(reference, current, SCHEMA, SETTINGS)
    worker.close()
    assert process is not None and not process.is_alive()


# --- failures and rows ---------------------------------------------------------------------


def test_a_failing_report_raises_with_the_workers_traceback(data: pd.DataFrame) -> None:
    broken = data[SCHEMA.features].drop(columns=["island"]).iloc[:50]
    with ReportWorker() as worker, pytest.raises(ReportError) as raised:
        worker.run(data[SCHEMA.features], broken, SCHEMA, SETTINGS)
    assert "The Evidently reports failed" in str(raised.value)
    assert "island" in str(raised.value) and "Traceback" in str(raised.value)


def test_without_rows_the_worker_is_not_asked_and_is_stopped(reference: pd.DataFrame) -> None:
    worker = ReportWorker()
    process = worker._process
    reports = worker.run(reference, None, SCHEMA, SETTINGS)
    worker.close()
    assert all(NO_DATA in report.html for report in reports.values())
    assert process is not None and not process.is_alive()
