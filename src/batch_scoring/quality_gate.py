"""The checks on the input as a whole, before any row is scored or captured: the share
of refused rows, and the data-quality gate.

The gate compares a uniform sample of the valid input rows with the data the version
was trained on (recorded with the model; the `--dataset` file for a model without it),
with the monitoring pipeline's data summary and drift reports and thresholds
(`model_monitoring.reports`, `monitoring:` in the config). pandas, numpy and Evidently
are imported inside the functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from common.data import DatasetSchema

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from common.settings import MonitoringSettings


def invalid_fraction_error(rejected: int, rows: int, max_fraction: float) -> str | None:
    """Why the run must fail because too many rows were refused, or None."""
    if rows == 0 or rejected / rows <= max_fraction:
        return None
    return (
        f"{rejected} of {rows} rows ({rejected / rows:.2%}) were refused, more than "
        f"--max-invalid-fraction {max_fraction} allows; nothing was written to the output. "
        "The log lists the refused rows by reason: fix the input or raise the fraction."
    )


@dataclass(frozen=True)
class GateResult:
    """What the gate concluded about the input sample against the training data."""

    rows: int
    drift_detected: bool = False
    drifted_columns: list[str] = field(default_factory=list)
    failed_tests: list[str] = field(default_factory=list)
    page: str = ""  # Evidently's drift report, a self-contained HTML page

    def describe(self) -> str:
        if self.rows == 0:
            return "No valid rows to compare with the training data."
        verdict = (
            f"drift in {', '.join(self.drifted_columns)}" if self.drift_detected else "no drift"
        )
        failed = (
            f"; failed data-quality tests: {len(self.failed_tests)}" if self.failed_tests else ""
        )
        return f"{verdict} on a sample of {self.rows} rows{failed}."


def gate_refusal(
    gate: GateResult, rejected: int, rows: int, max_fraction: float, fail_on_drift: bool
) -> str | None:
    """Why the run must stop before scoring (too many refused rows, or drift with
    `--fail-on-drift`), or None."""
    problem = invalid_fraction_error(rejected, rows, max_fraction)
    if problem is None and fail_on_drift and gate.drift_detected:
        problem = f"--fail-on-drift: {gate.describe()} Nothing was written."
    return problem


def quality_gate(
    reference: pd.DataFrame,
    sample: pd.DataFrame | None,
    schema: DatasetSchema,
    settings: MonitoringSettings,
) -> GateResult:
    """The monitoring pipeline's data summary and drift checks on the input sample."""
    if sample is None or len(sample) == 0:
        return GateResult(rows=0, page="<p>No valid rows to compare.</p>")
    from model_monitoring.reports import drift_report, production_frame, summary_report

    current = production_frame(sample, schema)[schema.features]
    reference = production_frame(reference, schema)[schema.features]
    _, summary = summary_report(reference, current, schema)
    snapshot, drift = drift_report(reference, current, schema, settings)
    failed = [test["name"] for test in summary.tests if test["status"] == "FAIL"]
    return GateResult(
        rows=len(current),
        drift_detected=bool(drift.values["drift_detected"]),
        drifted_columns=list(drift.values["drifted_columns"]),
        failed_tests=failed,
        page=snapshot.get_html_str(as_iframe=False),
    )


def training_reference(
    model_name: str,
    version: str,
    schema: DatasetSchema,
    *,
    max_rows: int,
    dataset: str,
    is_production: bool,
    logger: logging.Logger,
) -> tuple[pd.DataFrame | None, list[str] | None]:
    """What the gate and the card compare the input with, as the monitoring pipeline
    takes its reference: a sample of the version's training rows (the `dataset` file's
    when none were recorded with the model) and their target as text (None without one)."""
    from common.data import load_dataset
    from common.pipeline import dataset_seed
    from common.tracking import training_data
    from model_monitoring.reports import sample_rows

    reference = training_data(model_name, version)
    if reference is None:
        logger.warning("No training data recorded with the model: using %s.", dataset)
        reference = load_dataset(dataset, schema, dataset_seed(is_production))
    classes = reference[schema.target].astype(str).tolist() if schema.target in reference else None
    return sample_rows(reference[schema.features], max_rows), classes


class Sample:
    """A uniform random sample of at most `size` rows of a table read chunk by chunk: the
    rows the gate checks.

    Every row gets a random key; the sample is the rows with the smallest keys
    (bottom-k), so it never holds more than `size` rows plus one chunk.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        import numpy as np

        self.size = size
        self._random = np.random.default_rng(seed)
        self._rows: pd.DataFrame | None = None
        self._keys: np.ndarray | None = None

    def add(self, rows: pd.DataFrame) -> None:
        import numpy as np
        import pandas as pd

        keys = self._random.random(len(rows))
        if self._rows is not None:
            rows = pd.concat([self._rows, rows.reset_index(drop=True)], ignore_index=True)
            keys = np.concatenate([self._keys, keys])
        keep = np.sort(np.argsort(keys, kind="stable")[: self.size])
        self._rows, self._keys = rows.iloc[keep].reset_index(drop=True), keys[keep]

    @property
    def rows(self) -> pd.DataFrame | None:
        return self._rows
