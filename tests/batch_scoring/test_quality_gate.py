"""The checks on the input as a whole (src/batch_scoring/quality_gate.py): the refused
share, the gate's verdict and its sample. The gate's Evidently reports run in the
pipeline tests (tests/pipelines/test_scoring.py)."""

from __future__ import annotations

import pandas as pd

from batch_scoring.quality_gate import GateResult, Sample, gate_refusal, invalid_fraction_error


def test_the_invalid_fraction_is_allowed_up_to_its_limit() -> None:
    assert invalid_fraction_error(1, 100, 0.01) is None
    assert invalid_fraction_error(0, 0, 0.0) is None
    message = invalid_fraction_error(2, 100, 0.01)
    assert message is not None and "2 of 100 rows (2.00%)" in message


def test_drift_stops_the_run_only_with_fail_on_drift_and_refusals_come_first() -> None:
    drift = GateResult(rows=50, drift_detected=True, drifted_columns=["x"])
    assert gate_refusal(drift, 0, 100, 0.01, fail_on_drift=False) is None
    message = gate_refusal(drift, 0, 100, 0.01, fail_on_drift=True)
    assert message == "--fail-on-drift: drift in x on a sample of 50 rows. Nothing was written."
    too_many = gate_refusal(drift, 2, 100, 0.01, fail_on_drift=True)
    assert too_many is not None and "--max-invalid-fraction" in too_many
    assert gate_refusal(GateResult(rows=50), 0, 100, 0.01, fail_on_drift=True) is None


def test_the_sample_is_uniform_over_chunks_and_bounded() -> None:
    sample = Sample(100, seed=1)
    for start in range(0, 10_000, 1000):
        sample.add(pd.DataFrame({"x": range(start, start + 1000)}))
    rows = sample.rows
    assert rows is not None and len(rows) == 100
    assert rows["x"].is_unique
    # Drawn from the whole table, not its first chunks: every tenth has some.
    assert (rows["x"] // 1000).nunique() >= 7
