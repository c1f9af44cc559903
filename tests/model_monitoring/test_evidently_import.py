"""model_monitoring.evidently_import: Evidently imported in part, and the pages it gives.

The claim that matters is that the pages and conclusions are those of the usual
`import evidently`: a process that imports Evidently only in part (and a report worker,
which also splits the reports with a child) must give the pages of a process that
imports it whole, up to the random ids Evidently writes into every page. Those
processes seed their string hashes alike, and the rows have no missing values:
Evidently orders categories by iterating over sets, whose order follows the hashes
(NaN's by identity).

The machinery underneath (`defer_reexports`: re-exporting packages imported without
their initialiser) is tested on a toy package written to a temporary directory, whose
modules record that they were imported; the finder is in place for that package
alone, and removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import model_monitoring.reports as report_functions
from model_monitoring.evidently_import import (
    REPORT_IMPORTS,
    ReexportingPackageFinder,
    Reexports,
    package_reexports,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PENGUINS_CSV = REPO_ROOT / "data" / "penguins.csv"
LOCAL_CONFIG = REPO_ROOT / "config" / "local.yml"
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


WHOLE = """
import evidently
from model_monitoring.reports import run_reports
reports = run_reports(reference, current, schema, MonitoringSettings())
print(json.dumps({"ui": "evidently.ui" in sys.modules, "reports": described(reports)}))
"""
IN_PART = """
from model_monitoring.evidently_import import import_evidently
from model_monitoring.report_worker import ReportWorker
from model_monitoring.reports import build_report
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


def test_the_report_process_imports_ahead_what_the_report_functions_import() -> None:
    import ast
    import inspect

    imported: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(inspect.getsource(report_functions))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("evidently"):
            imported.setdefault(node.module, set()).update(a.name for a in node.names)
    assert imported == {module: set(names) for module, names in REPORT_IMPORTS.items()}


# --- re-exporting packages imported without their initialiser ----------------------------


def test_a_reexporting_initialiser_is_read_as_names_and_their_modules() -> None:
    source = '''"""A package."""
from .metrics import Accuracy, F1 as F1Score
from . import tests
from ..core.base import Base
from evidently.x.y import Thing
__all__ = ["Accuracy", "F1Score", "tests", "Base", "Thing"]
'''
    found = package_reexports(source, "evidently.x")
    assert found == Reexports(
        names={
            "Accuracy": ("evidently.x.metrics", "Accuracy"),
            "F1Score": ("evidently.x.metrics", "F1"),
            "tests": ("evidently.x.tests", None),
            "Base": ("evidently.core.base", "Base"),
            "Thing": ("evidently.x.y", "Thing"),
        },
        all=["Accuracy", "F1Score", "tests", "Base", "Thing"],
        doc="A package.",
    )


@pytest.mark.parametrize(
    "source",
    [
        "from .metrics import *\n",
        "import os\n",
        "from .metrics import Accuracy\nregister(Accuracy)\n",
        "from .metrics import Accuracy\nDEFAULT = Accuracy()\n",
        "try:\n    from .metrics import Accuracy\nexcept ImportError:\n    pass\n",
    ],
)
def test_an_initialiser_that_does_more_than_re_export_is_left_alone(source: str) -> None:
    assert package_reexports(source, "evidently.x") is None


@pytest.fixture
def toy_package(tmp_path: Path) -> Iterator[str]:
    """A package whose initialiser re-exports from a module that records its import,
    with a subpackage that is not lazy and one that is kept eager; the finder in place
    for it alone, and everything gone afterwards."""
    root = tmp_path / "toy_reexporting"
    (root / "plain").mkdir(parents=True)
    (root / "kept").mkdir()
    (root / "__init__.py").write_text(
        '"""Toy."""\nfrom .heavy import Heavy\nfrom . import plain\n__all__ = ["Heavy"]\n'
    )
    (root / "heavy.py").write_text(
        "import sys\nsys.modules['toy_reexporting'].imports.append('heavy')\nclass Heavy: ...\n"
    )
    (root / "plain" / "__init__.py").write_text("VALUE = 1 + 1\n")
    (root / "kept" / "__init__.py").write_text("from .parts import PART\n")
    (root / "kept" / "parts.py").write_text("PART = 'part'\n")
    finder = ReexportingPackageFinder("toy_reexporting", frozenset({"toy_reexporting.kept"}))
    sys.path.insert(0, str(tmp_path))
    sys.meta_path.insert(0, finder)
    try:
        yield "toy_reexporting"
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.partition(".")[0] == "toy_reexporting"]:
            del sys.modules[name]


def test_a_reexported_name_is_imported_on_first_use(toy_package: str) -> None:
    import importlib

    package = importlib.import_module(toy_package)
    package.imports = []
    assert f"{toy_package}.heavy" not in sys.modules
    assert package.__doc__ == "Toy." and package.__all__ == ["Heavy"]

    from toy_reexporting import Heavy  # type: ignore[import-not-found]

    assert package.imports == ["heavy"]
    assert Heavy is sys.modules[f"{toy_package}.heavy"].Heavy
    assert package.Heavy is Heavy and package.imports == ["heavy"]  # once
    assert package.plain.VALUE == 2  # a submodule; its own initialiser ran, as usual
    with pytest.raises(AttributeError, match="has no attribute 'Missing'"):
        _ = package.Missing


def test_a_package_kept_eager_runs_its_initialiser(toy_package: str) -> None:
    import importlib

    kept = importlib.import_module(f"{toy_package}.kept")
    assert kept.PART == "part" and f"{toy_package}.kept.parts" in sys.modules
