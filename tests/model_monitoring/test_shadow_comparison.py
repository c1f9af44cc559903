"""model_monitoring.shadow_comparison: champion and shadow on the same labelled rows.

The captures are written through the project's own store and read back through the
local backend, as the monitoring pipeline reads them (`support.monitoring.shadow_store`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from support import monitoring as mf

from common.settings import PromotionSettings

SPECIES = ["Adelie", "Chinstrap", "Gentoo"]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return mf.penguins()


def test_the_shadow_is_compared_on_the_rows_it_answered(data: pd.DataFrame, tmp_path: Path) -> None:
    from model_monitoring.shadow_comparison import shadow_comparison

    captured = mf.shadow_store(tmp_path / "c.db", data, 250, 30, 10, shadow_failed=5)
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
    from model_monitoring.shadow_comparison import (
        challenger_finding,
        shadow_comparison,
        shadow_figures,
    )

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
    from model_monitoring.shadow_comparison import shadow_comparison

    path = tmp_path / "c.db"
    mf.shadow_store(path, data, 40, 0, 40, shadow="5")  # an earlier shadow
    captured = mf.shadow_store(path, data.iloc[40:], 60, 6, 0, shadow="7")
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
    from model_monitoring.shadow_comparison import (
        challenger_finding,
        shadow_comparison,
        shadow_figures,
    )

    # Champion wrong on 20 rows, shadow on 5: 0.92 against 0.98, p ~ 0.004.
    comparison = shadow_comparison(mf.shadow_store(tmp_path / "c.db", data, 250, 20, 5))
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
    from model_monitoring.shadow_comparison import (
        challenger_finding,
        shadow_comparison,
        shadow_figures,
    )

    comparison = shadow_comparison(mf.shadow_store(tmp_path / "c.db", data, 20, 5, 0, 20))
    assert comparison.comparison is None and comparison.missing == 20
    finding = challenger_finding(comparison, PromotionSettings())
    assert finding["challenger_better"] is False
    assert "answered none of the 20" in finding["reason"]
    assert shadow_figures(comparison, finding) == {
        "shadow_rows": 20.0,
        "shadow_missing": 20.0,
        "challenger_better": 0.0,
    }
