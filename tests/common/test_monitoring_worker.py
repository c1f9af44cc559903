"""The report process of src/common/monitoring.py: Evidently imported in part, the
reports split between two processes, and the pages they give.

The claim that matters is that the pages and conclusions are those of the usual
`import evidently`: a process that imports Evidently only in part (and a worker that
also splits the reports with a child) must give the pages of a process that imports it
whole, up to the random ids Evidently writes into every page. Those processes seed
their string hashes alike, and the rows have no missing values: Evidently orders
categories by iterating over sets, whose order follows the hashes (NaN's by identity).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import model_monitoring.reports as monitoring
from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset
from common.settings import MonitoringSettings
from model_monitoring.reports import REPORTS, Report, ReportError, ReportWorker, parallel_reports

REPO_ROOT = Path(__file__).resolve().parents[2]
PENGUINS_CSV = REPO_ROOT / "data" / "penguins.csv"
LOCAL_CONFIG = REPO_ROOT / "config" / "local.yml"
SCHEMA = DatasetSchema.from_config(load_project_configuration(LOCAL_CONFIG)["dataset"])
SETTINGS = MonitoringSettings()
# Evidently names each page's widgets with fresh UUIDs.
RANDOM_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# The rows every comparison reports on, rebuilt the same way in the subprocesses, and
# what is compared of their reports (`described` below, printed as JSON).
PREAMBLE = f"""
import hashlib, json, re, sys
sys.path.insert(0, {str(REPO_ROOT / "src")!r})
from common.config import load_project_configuration
from common.settings import MonitoringSettings
from common.data import DatasetSchema, load_dataset
schema = DatasetSchema.from_config(load_project_configuration({str(LOCAL_CONFIG)!r})["dataset"])
data = load_dataset({str(PENGUINS_CSV)!r}, schema, 42).dropna().reset_index(drop=True)
reference = data[schema.features]
current = data[schema.features].iloc[:150].assign(
    prediction=data[schema.target].iloc[:150].to_numpy(),
    ground_truth=data[schema.target].iloc[::-1].iloc[:150].to_numpy(),
)
RANDOM_ID = re.compile({RANDOM_ID.pattern!r})
def described(reports):
    return {{
        name: {{
            "page": hashlib.sha256(RANDOM_ID.sub("", report.html).encode()).hexdigest(),
            "evidently page": "window.drawDashboard(" in report.html,
            "tests": report.outcome.tests,
            "values": report.outcome.values,
        }}
        for name, report in reports.items()
    }}
"""


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


WHOLE = """
import evidently
from model_monitoring.reports import run_reports
reports = run_reports(reference, current, schema, MonitoringSettings())
print(json.dumps({"ui": "evidently.ui" in sys.modules, "reports": described(reports)}))
"""
IN_PART = """
from model_monitoring.reports import ReportWorker, build_report, import_evidently
with ReportWorker() as worker:
    by_worker = worker.run(reference, current, schema, MonitoringSettings())
evidently_here = "evidently" in sys.modules
lazy = import_evidently()
ahead = sorted(name for name in sys.modules if name.startswith("evidently"))
here = {
    name: build_report(name, reference, current, schema, MonitoringSettings())
    for name in ("summary", "drift", "classification")
}
modules = sorted(name for name in sys.modules if name.startswith("evidently"))
print(json.dumps({
    "worker": described(by_worker), "evidently before": evidently_here,
    "lazy": lazy, "imported ahead": ahead, "modules": modules, "here": described(here),
}))
"""


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    """What fresh Python processes print (JSON, last line), each running its code after
    `PREAMBLE`: `whole` imports Evidently as usual and runs the reports; `in_part` starts
    a worker before anything imported Evidently, then imports it in part and runs the
    reports itself. Both at once: they take seconds each.

    Evidently orders some categories and classes by iterating over sets of strings, so
    a page differs from one process to the next unless their hashes are seeded alike.
    """
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-c", PREAMBLE + code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        for name, code in {"whole": WHOLE, "in_part": IN_PART}.items()
    }
    printed = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name}:\n{stderr[-3000:]}"
        printed[name] = json.loads(stdout.splitlines()[-1])
    assert printed["whole"]["ui"] is True  # the usual import, whole
    assert all(report["evidently page"] for report in printed["whole"]["reports"].values())
    return printed


@pytest.fixture(scope="module")
def expected(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return reports["whole"]["reports"]


@pytest.fixture(scope="module")
def in_part(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return reports["in_part"]


# --- what the report process imports, and what it gives ------------------------------------


def test_importing_evidently_in_part_gives_the_same_reports(
    expected: dict[str, Any], in_part: dict[str, Any]
) -> None:
    assert in_part["lazy"] is True
    assert in_part["imported ahead"] == in_part["modules"]  # the reports needed no more
    modules = in_part["modules"]
    # Neither the UI server, nor the LLM judges, nor the legacy test suites.
    assert not [m for m in modules if m.startswith(("evidently.ui", "evidently.llm"))]
    assert "evidently.legacy.tests.regression_performance_tests" not in modules
    assert len(modules) < 250, len(modules)
    assert in_part["here"] == expected


def test_the_worker_gives_the_same_reports(
    expected: dict[str, Any], in_part: dict[str, Any]
) -> None:
    # Started before anything imported Evidently: the worker imports it in part and
    # splits the reports with a child of its own.
    assert in_part["evidently before"] is False
    assert in_part["worker"] == expected


# --- two processes for three reports ------------------------------------------------------


def some_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    reference, current = rows()
    return reference.iloc[:20], current.iloc[:20]


def test_the_reports_split_between_two_processes_and_come_back_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    def fake(name: str, *args: Any) -> Report:
        return Report(f"{name} by {os.getpid()}", monitoring.Outcome([], {"name": name}))

    monkeypatch.setattr(monitoring, "build_report", fake)
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
        return Report(name, monitoring.Outcome([], {}))

    monkeypatch.setattr(monitoring, "build_report", fake)
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
        return Report(name, monitoring.Outcome([], {}))

    monkeypatch.setattr(monitoring, "build_report", fake)
    with pytest.raises(ReportError, match="summary report ended without an answer"):
        parallel_reports(*some_rows(), SCHEMA, SETTINGS)


def test_without_rows_nothing_is_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def no_fork() -> int:
        raise AssertionError("forked")

    monkeypatch.setattr(os, "fork", no_fork)
    reference, current = some_rows()
    reports = parallel_reports(reference, current.iloc[:0], SCHEMA, SETTINGS)
    assert all(monitoring.NO_DATA in report.html for report in reports.values())


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
    assert all(monitoring.NO_DATA in report.html for report in reports.values())


def test_a_worker_whose_answer_is_not_awaited_is_stopped() -> None:
    reference, current = some_rows()
    worker = ReportWorker()
    process = worker._process
    worker.submit(reference, current, SCHEMA, SETTINGS)
    worker.close()
    assert process is not None and not process.is_alive()


def test_the_report_process_imports_ahead_what_the_report_functions_import() -> None:
    import ast
    import inspect

    imported: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(inspect.getsource(monitoring))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("evidently"):
            imported.setdefault(node.module, set()).update(a.name for a in node.names)
    assert imported == {module: set(names) for module, names in monitoring.REPORT_IMPORTS.items()}
