"""Monitoring: Evidently reports on production data and the figures drawn from them.

Functions take plain DataFrames and return Evidently snapshots or plain Python data,
so the monitoring pipeline's steps stay thin and this logic is testable on its own.
Evidently is imported inside the functions: it costs seconds per process. The
pipeline runs the reports in a process of their own (`ReportWorker`), which imports
only the part of Evidently they use (`import_evidently`).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import pickle
import sys
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.data import DatasetSchema

if TYPE_CHECKING:
    import pandas as pd

    from common.settings import MonitoringSettings, PromotionSettings
    from promotion.rule import PairedComparison

PREDICTION = "prediction"
GROUND_TRUTH = "ground_truth"

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


def _definition(schema: DatasetSchema, classification: bool = False) -> Any:
    from evidently import DataDefinition, MulticlassClassification

    categorical = list(schema.categorical_features)
    extra = {}
    if classification:
        categorical += [PREDICTION, GROUND_TRUTH]
        extra["classification"] = [
            MulticlassClassification(target=GROUND_TRUTH, prediction_labels=PREDICTION)
        ]
    return DataDefinition(
        numerical_columns=list(schema.numeric_features), categorical_columns=categorical, **extra
    )


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
        # One drifted column is an alert, so one is dataset drift in the report too.
        drift_share=1 / len(schema.features),
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
    snapshot = Report([ClassificationPreset()], include_tests=True).run(
        reference_data=None, current_data=_dataset(frame, _definition(schema, True))
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


def import_plotting() -> None:
    """Import Matplotlib as the history chart (`model_monitoring.cards.history_chart`) uses it.

    Half a second, spent by the monitoring pipeline while its reports run elsewhere.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot


def conclusions(reports: dict[str, Report]) -> dict[str, Any]:
    """What the reports of `run_reports` concluded, by the artifact names users read.

    `tests` holds every report's tests; without production rows there are none, no
    drift and no accuracy.
    """
    summary, drift, classification = (
        reports[name].outcome for name in ("summary", "drift", "classification")
    )
    return {
        "summary_tests": summary.tests,
        "drift_tests": drift.tests,
        "classification_tests": classification.tests,
        "tests": summary.tests + drift.tests + classification.tests,
        "drift_detected": drift.values.get("drift_detected", False),
        "drifted_columns": drift.values.get("drifted_columns", []),
        "accuracy": classification.values.get("accuracy"),
    }


class ReportError(RuntimeError):
    """The reports failed in their process; the message holds that process's traceback."""


# --- importing only the part of Evidently the reports use ---------------------------------
#
# `import evidently` takes ~4-5 s of CPU here: its package initialisers import every
# metric, test, preset, descriptor (NLTK, LLM judges) and the UI server (Litestar), and
# any `from evidently.x import y` runs them all first. Most of those initialisers only
# re-export names of their submodules: in the report process they are skipped, and each
# name is imported from its submodule when first used (model_monitoring.reexports). What the
# reports use is then ~120 of Evidently's ~430 modules, ~2.3 s of CPU, imported by the
# worker while its caller loads the data. Two things initialisers did on the side are
# kept: the statistical tests register themselves by name when their package is
# imported, and one UI module sets the colours of every Plotly figure. The pages and
# conclusions are those of the usual import (tests/common/test_monitoring_worker.py
# compares them); another release of Evidently than the one compared is imported whole.

LAZY_EVIDENTLY_VERSION = "0.7.23"
# Initialisers that fill a registry the reports look names up in: they run as usual.
EVIDENTLY_REGISTRY_PACKAGES = frozenset({"evidently.legacy.calculations.stattests"})
# Imported for its side effect: the colour sequence of every Plotly figure in a report.
EVIDENTLY_STYLE_MODULE = "evidently.legacy.ui.dashboards.utils"
# What the report functions above import from Evidently, by module: imported ahead,
# they make the first report of a process cost what the next ones do.
REPORT_IMPORTS = {
    "evidently": ("DataDefinition", "Dataset", "MulticlassClassification", "Report"),
    "evidently.metrics": ("DuplicatedRowCount",),
    "evidently.presets": ("ClassificationPreset", "DataDriftPreset", "ValueStats"),
    "evidently.tests": ("gte", "lte"),
}


def import_evidently() -> bool:
    """Import what the report functions import from Evidently; True if only that part
    of Evidently was imported.

    For use in a process of its own (the report worker), before the reports are asked
    for: the packages it creates stay as they are for that process's life.
    """
    from importlib import metadata

    from model_monitoring.reexports import defer_reexports

    try:
        lazy = metadata.version("evidently") == LAZY_EVIDENTLY_VERSION
    except metadata.PackageNotFoundError:
        lazy = False
    lazy = lazy and "evidently" not in sys.modules
    if lazy:
        defer_reexports("evidently", EVIDENTLY_REGISTRY_PACKAGES)
        importlib.import_module(EVIDENTLY_STYLE_MODULE)
    else:
        import evidently  # noqa: F401
    for module, names in REPORT_IMPORTS.items():
        for name in names:
            getattr(importlib.import_module(module), name)
    return lazy


# --- the report process -------------------------------------------------------------------

# The reports split between the worker and one forked child, about even in time.
CHILD_REPORTS = ("summary",)


def parallel_reports(
    reference: pd.DataFrame,
    current: pd.DataFrame | None,
    schema: DatasetSchema,
    settings: MonitoringSettings,
) -> dict[str, Report]:
    """`run_reports`, with `CHILD_REPORTS` computed meanwhile by a forked process.

    Plotly builds the figures, a second or more per report on one core; the process
    that asked waits, so its core is free. Without rows, or without fork, as
    `run_reports`.
    """
    if current is None or len(current) == 0 or not hasattr(os, "fork"):
        return run_reports(reference, current, schema, settings)
    import gc

    gc.freeze()  # the child's collections would otherwise copy every page it shares
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child leaves by os._exit)
        status = 1
        try:
            os.close(readable)
            try:
                built = {
                    name: build_report(name, reference, current, schema, settings)
                    for name in CHILD_REPORTS
                }
                answer: tuple[str, Any] = ("ok", built)
            except BaseException:
                answer = ("error", traceback.format_exc())
            with os.fdopen(writable, "wb") as pipe:
                pickle.dump(answer, pipe, protocol=pickle.HIGHEST_PROTOCOL)
            status = 0
        finally:
            os._exit(status)
    os.close(writable)
    try:
        mine = {
            name: build_report(name, reference, current, schema, settings)
            for name in REPORTS
            if name not in CHILD_REPORTS
        }
    finally:
        with os.fdopen(readable, "rb") as pipe:
            answer = pipe.read()
        _, exit_status = os.waitpid(child, 0)
        gc.unfreeze()
    if not answer:
        raise ReportError(
            f"The process computing the {', '.join(CHILD_REPORTS)} report ended without an "
            f"answer (wait status {exit_status}); rerun, and check memory if it recurs."
        )
    status, payload = pickle.loads(answer)
    if status != "ok":
        raise ReportError(f"The Evidently reports failed:\n{payload}")
    return {name: {**mine, **payload}[name] for name in REPORTS}


def _serve_reports(connection: Any) -> None:
    """In the report process: import Evidently at once, then run the reports asked for."""
    try:
        try:
            import_evidently()  # seconds: the reason this process exists
            failure = None
        except Exception:
            failure = f"Importing Evidently failed:\n{traceback.format_exc()}"
        request = connection.recv()
        if request is None:
            return
        try:
            if failure is not None:
                raise ReportError(failure)
            answer = ("ok", parallel_reports(*request))
        except ReportError as error:
            answer = ("error", str(error))
        except Exception:
            answer = ("error", f"The Evidently reports failed:\n{traceback.format_exc()}")
        connection.send(answer)
    except (EOFError, OSError):
        pass  # The caller closed the pipe: nothing to report on.
    finally:
        connection.close()


class ReportWorker:
    """`run_reports` in a forked process that starts importing Evidently at once.

    Importing Evidently costs seconds and so does loading the data to report on (MLflow's
    import, the reference's download, the captured rows). Started before the loading,
    the worker imports on the other core meanwhile, and it ends without Python's slow
    exit. Between `submit` and `result` the caller is free to do other work. Where
    processes cannot be forked, or without rows, the reports run in the caller's
    process. Use as a context manager: the process is always stopped.
    """

    def __init__(self) -> None:
        self._process: Any = None
        self._request: tuple | None = None
        self._sent = self._answered = False
        if "fork" not in multiprocessing.get_all_start_methods():
            return
        context = multiprocessing.get_context("fork")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve_reports, args=(child,), name="evidently-reports", daemon=True
        )
        self._process.start()
        child.close()

    def submit(
        self,
        reference: pd.DataFrame,
        current: pd.DataFrame | None,
        schema: DatasetSchema,
        settings: MonitoringSettings,
    ) -> None:
        """Ask for the reports of `run_reports` on these rows; `result` returns them."""
        if self._request is not None:
            raise ReportError("A report worker serves one request: start another one.")
        self._request = (reference, current, schema, settings)
        if self._process is None or current is None or len(current) == 0:
            return  # `result` computes them here
        self._sent = True
        with contextlib.suppress(OSError):  # the worker is gone: `result` says so
            self._connection.send(self._request)

    def result(self) -> dict[str, Report]:
        """The reports asked for with `submit`."""
        if self._request is None:
            raise ReportError("Nothing was submitted to the report worker.")
        if not self._sent:
            return run_reports(*self._request)
        try:
            status, payload = self._connection.recv()
        except (EOFError, OSError):
            self._process.join(timeout=5)
            raise ReportError(
                f"The report process ended without an answer (exit code "
                f"{self._process.exitcode}); rerun, and check memory if it recurs."
            ) from None
        self._answered = True
        if status != "ok":
            raise ReportError(payload)
        return payload

    def run(
        self,
        reference: pd.DataFrame,
        current: pd.DataFrame | None,
        schema: DatasetSchema,
        settings: MonitoringSettings,
    ) -> dict[str, Report]:
        """The reports of `run_reports`, computed by the worker when there is data."""
        self.submit(reference, current, schema, settings)
        return self.result()

    def close(self) -> None:
        if self._process is None:
            return
        self._connection.close()
        if not self._answered:
            self._process.terminate()  # importing or reporting for nobody
        self._process.join()  # having answered, it ends by itself
        self._process = None

    def __enter__(self) -> ReportWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def figures(
    rows: int,
    tests: list[dict[str, str]],
    drift_detected: bool,
    drifted: list[str],
    accuracy: float | None,
) -> dict[str, float]:
    """The figures of one monitoring run, as MLflow metrics (no accuracy without rows)."""
    metrics = {
        "rows": float(rows),
        "drift_detected": float(drift_detected),
        "drifted_columns": float(len(drifted)),
        "failed_tests": float(sum(test["status"] == "FAIL" for test in tests)),
    }
    if accuracy is not None:
        metrics["accuracy"] = float(accuracy)
    return metrics


def alerts(
    drift_detected: bool, drifted: list[str], accuracy: float | None, threshold: float
) -> list[str]:
    """Human-readable alerts, empty when all is well."""
    messages = []
    if drift_detected:
        messages.append(f"Data drift detected in {', '.join(drifted)}.")
    if accuracy is not None and accuracy < threshold:
        messages.append(f"Production accuracy {accuracy:.3f} is below the threshold {threshold}.")
    return messages


# --- champion and shadow on the same labelled rows ---------------------------------------


SHADOW_ARTIFACT = "shadow_comparison.json"  # in the MLflow monitoring run


@dataclass(frozen=True)
class ShadowComparison:
    """The served model and its shadow on the labelled rows both were asked about.

    `rows` is every labelled row of the pair (`champion_version`, `shadow_version`);
    `missing` those the shadow did not answer (it failed, or was suspended); the paired
    figures (`comparison`) are on the others. Confusion matrices: rows are the true
    class, columns the predicted one, in the order of `classes`.
    """

    champion_version: str | None
    shadow_version: str
    rows: int
    missing: int
    left_out: int  # labelled shadow rows of other pairs (an earlier shadow or champion)
    comparison: PairedComparison | None
    classes: list[str]
    champion_confusion: list[list[int]]
    shadow_confusion: list[list[int]]

    def as_dict(self) -> dict[str, Any]:
        """Plain data: the Metaflow artifact, the MLflow JSON artifact, the card's input."""
        figures = {} if self.comparison is None else self.comparison.figures()
        return {
            "champion_version": self.champion_version,
            "shadow_version": self.shadow_version,
            "rows": self.rows,
            "missing": self.missing,
            "left_out": self.left_out,
            "paired": figures,
            "classes": self.classes,
            "champion_confusion": self.champion_confusion,
            "shadow_confusion": self.shadow_confusion,
        }


def _confusion(truth: list[str], predicted: list[str], classes: list[str]) -> list[list[int]]:
    index = {name: position for position, name in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for actual, guess in zip(truth, predicted, strict=True):
        matrix[index[actual]][index[guess]] += 1
    return matrix


def shadow_comparison(captured: pd.DataFrame | None) -> ShadowComparison | None:
    """Champion against shadow on the labelled captured rows the shadow scored too.

    `captured` is what `Backend.load` returns, newest first. When the window holds
    several (served version, shadow version) pairs, the newest row's pair is compared:
    rows of another pair were answered by other models. None without shadow rows.
    """
    from promotion.rule import compare_paired

    if captured is None or "shadow_version" not in captured:
        return None
    labelled = captured[captured[GROUND_TRUTH].notna() & captured["shadow_version"].notna()]
    if not len(labelled):
        return None
    labelled = labelled.sort_values("created_at", ascending=False, kind="stable")
    newest = labelled.iloc[0]
    champion_version = _version(newest["model_version"])
    served = labelled["model_version"]
    same_champion = (
        served.isna() if champion_version is None else served.astype(str) == champion_version
    )
    pair = labelled[same_champion & (labelled["shadow_version"] == newest["shadow_version"])]
    answered = pair[pair["shadow_prediction"].notna()]
    truth = answered[GROUND_TRUTH].astype(str).tolist()
    champion = answered[PREDICTION].astype(str).tolist()
    shadow = answered["shadow_prediction"].astype(str).tolist()
    classes = sorted({*truth, *champion, *shadow})
    return ShadowComparison(
        champion_version=champion_version,
        shadow_version=str(newest["shadow_version"]),
        rows=len(pair),
        missing=len(pair) - len(answered),
        left_out=len(labelled) - len(pair),
        comparison=compare_paired(truth, champion, shadow) if truth else None,
        classes=classes,
        champion_confusion=_confusion(truth, champion, classes),
        shadow_confusion=_confusion(truth, shadow, classes),
    )


def _version(value: Any) -> str | None:
    import pandas as pd

    return None if pd.isna(value) else str(value)


def challenger_finding(
    comparison: ShadowComparison | None, promotion: PromotionSettings
) -> dict[str, Any] | None:
    """Whether the shadow beats the champion by the promotion rule, and why.

    Kept apart from the alerts: a better challenger is news, not a failure. The rule
    is the deployment pipeline's (`promotion.rule.paired_verdict`). None without shadow rows.
    """
    from promotion.rule import paired_verdict

    if comparison is None:
        return None
    finding: dict[str, Any] = {
        "challenger_better": False,
        "shadow_version": comparison.shadow_version,
        "champion_version": comparison.champion_version,
    }
    paired = comparison.comparison
    if paired is None:
        return {
            **finding,
            "reason": f"the shadow answered none of the {comparison.rows} labelled rows "
            "(see its failures in the server log)",
            "summary": f"shadow v{comparison.shadow_version}: no answers to compare",
        }
    better, reason = paired_verdict(paired, promotion)
    summary = (
        f"challenger v{comparison.shadow_version} {paired.challenger_accuracy:.3f} vs "
        f"champion v{comparison.champion_version} {paired.champion_accuracy:.3f} on "
        f"{paired.rows} rows, p={paired.p_value:.2g}: "
        + ("challenger is better" if better else "not better")
        + f" ({reason})"
    )
    return {**finding, "challenger_better": better, "reason": reason, "summary": summary}


def shadow_figures(comparison: ShadowComparison | None, finding: dict[str, Any] | None) -> dict:
    """The comparison's figures as MLflow metrics of the monitoring run (none without)."""
    if comparison is None:
        return {}
    metrics = {
        "shadow_rows": float(comparison.rows),
        "shadow_missing": float(comparison.missing),
        "challenger_better": float(bool(finding and finding["challenger_better"])),
    }
    if comparison.comparison is not None:
        paired = comparison.comparison
        metrics.update(
            {
                "shadow_paired_rows": float(paired.rows),
                "shadow_champion_accuracy": paired.champion_accuracy,
                "shadow_accuracy": paired.challenger_accuracy,
                "shadow_difference": paired.difference,
                "shadow_p_value": paired.p_value,
            }
        )
    return metrics


def shadow_section(comparison: dict[str, Any] | None, finding: dict[str, Any] | None) -> list:
    """Card components: both models' figures, the finding, the confusion matrices side
    by side. `comparison` is `ShadowComparison.as_dict()`; nothing without one."""
    from metaflow.cards import Markdown, Table

    if comparison is None:
        return []
    champion, shadow = comparison["champion_version"], comparison["shadow_version"]
    components: list[Any] = [
        Markdown(
            f"## Champion v{champion} and shadow v{shadow}\n"
            f"{comparison['rows']} labelled rows answered by both; the shadow failed on "
            f"{comparison['missing']} of them."
            + (
                f" {comparison['left_out']} labelled rows of earlier pairs are left out."
                if comparison["left_out"]
                else ""
            )
        )
    ]
    paired = comparison["paired"]
    if paired:
        components.append(
            Table(
                [
                    [f"champion v{champion}", f"{paired['champion_accuracy']:.4f}",
                     paired["champion_only"]],
                    [f"shadow v{shadow}", f"{paired['challenger_accuracy']:.4f}",
                     paired["challenger_only"]],
                ],
                headers=["model", "accuracy", "rows only this model got right"],
            )
        )  # fmt: skip
        components.append(
            Markdown(
                f"Difference (shadow - champion) **{paired['difference']:+.4f}** on "
                f"{paired['rows']} paired rows; McNemar's exact p-value "
                f"**{paired['p_value']:.3g}**."
            )
        )
    if finding is not None:
        title = (
            "### FINDING: the challenger is better"
            if finding["challenger_better"]
            else "### Finding: the challenger is not better"
        )
        components.append(Markdown(f"{title}\n{finding['summary']}"))
    classes = comparison["classes"]
    if classes:
        rows = [
            [name, *champion_counts, "|", *shadow_counts]
            for name, champion_counts, shadow_counts in zip(
                classes,
                comparison["champion_confusion"],
                comparison["shadow_confusion"],
                strict=True,
            )
        ]
        components += [
            Markdown("### Confusion matrices (rows: actual; columns: predicted)"),
            Table(
                rows,
                headers=[
                    "actual",
                    *(f"champion: {name}" for name in classes),
                    "",
                    *(f"shadow: {name}" for name in classes),
                ],
            ),
        ]
    return components


# --- asking the deployment pipeline to promote the shadow ---------------------------------


def promotion_decision(finding: dict[str, Any] | None, auto: bool) -> tuple[bool, str]:
    """Whether to ask the deployment pipeline to promote the shadow, and why (for the log)."""
    if finding is None:
        return False, "no shadow answers among the labelled rows"
    if not finding["challenger_better"]:
        return False, f"shadow v{finding['shadow_version']} is not better: {finding['reason']}"
    if not auto:
        return False, (
            f"shadow v{finding['shadow_version']} is better; set `promotion.auto: true` to "
            "promote it from here, or run the deployment pipeline with --model-version "
            f"{finding['shadow_version']}"
        )
    return True, f"shadow v{finding['shadow_version']} is better: asking to promote it"


def promotion_command(
    deployment_flow: str,
    config_file: str,
    version: str,
    parameters: dict[str, str],
    python: str | None = None,
) -> list[str]:
    """The command that runs the deployment pipeline on `version`, with this run's
    configuration file and the shared parameters (`--backend`, `--dataset`, ...)."""
    import sys

    command = [python or sys.executable, deployment_flow, "--config", "project", config_file]
    command += ["run", "--model-version", str(version)]
    for name, value in parameters.items():
        if value not in (None, ""):
            command += [f"--{name}", str(value)]
    return command


def run_promotion(command: list[str], timeout: float = 900.0) -> dict[str, Any]:
    """Run `command` (from `promotion_command`) to its end; what happened, as data.

    The deployment pipeline decides for itself: it compares the versions again and
    may refuse. Its failure does not fail the monitoring run, whose figures stand.
    """
    import subprocess

    try:
        process = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"command": command, "returncode": None, "output": str(error)}
    output = f"{process.stdout}\n{process.stderr}".strip()
    return {"command": command, "returncode": process.returncode, "output": output[-4000:]}
