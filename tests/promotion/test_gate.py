"""Tests for promotion.gate: which evidence decides, in order, and what `--force` does.

The paired comparison on labelled captures is end to end (tests/pipelines/
test_deployment_gate.py); these cover the rest on a SQLite registry of their own and a
backend that holds a few captures, or fails to read them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from backends.base import BackendError
from common.settings import PromotionSettings
from promotion.errors import PromotionError
from promotion.gate import PromotionRequest, decide_promotion

DEFAULTS = PromotionSettings()


class CaptureHolder:
    """The one backend method the gate reads: the newest labelled captures."""

    def __init__(self, rows: int = 0, error: str | None = None) -> None:
        self.rows, self.error, self.reads = rows, error, 0

    def load(self, limit: int = 100, labeled_only: bool = False) -> pd.DataFrame | None:
        self.reads += 1
        if self.error:
            raise BackendError(self.error)
        return pd.DataFrame({"ground_truth": ["Adelie"] * self.rows}) if self.rows else None


def request(version: str = "2", champion: str | None = "1", **changes: Any) -> PromotionRequest:
    return PromotionRequest("m", version, champion, changes.pop("requested", version), **changes)


def test_a_request_that_needs_no_comparison_reads_no_captures(client: Any) -> None:
    backend = CaptureHolder(error="unreachable")

    first = decide_promotion(client, backend, request(champion=None), DEFAULTS)

    assert first.decision == "promoted" and "no champion yet" in first.reason
    assert backend.reads == 0


def test_too_few_labelled_captures_fall_back_to_cross_validated_scores(client: Any) -> None:
    client.set_model_version_tag("m", "1", "cv_accuracy", "0.90")
    client.set_model_version_tag("m", "2", "cv_accuracy", "0.95")

    decision = decide_promotion(client, CaptureHolder(rows=3), request(), DEFAULTS)

    assert (decision.decision, decision.evidence) == ("promoted", "cross-validation")
    assert decision.figures["labelled_rows"] == 3


def test_without_any_evidence_the_version_is_refused(client: Any) -> None:
    decision = decide_promotion(client, CaptureHolder(), request(), DEFAULTS)

    assert decision.refused and decision.evidence == "none"
    assert decision.figures["missing_scores"] == ["2", "1"]


def test_a_failed_comparison_stops_the_run_unless_forced(client: Any) -> None:
    unreadable = CaptureHolder(error="the store is gone")
    with pytest.raises(PromotionError, match="Reading the labelled captures failed: the store"):
        decide_promotion(client, unreadable, request(), DEFAULTS)

    decision = decide_promotion(client, unreadable, request(force=True), DEFAULTS)

    assert decision.decision == "forced"
    assert "the comparison failed: Reading the labelled captures failed" in decision.reason
