"""model_monitoring.end_card: the pieces of the monitoring pipeline's `end` card."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from support import monitoring as mf

from common.settings import MonitoringSettings, PromotionSettings

SETTINGS = MonitoringSettings()


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return mf.penguins()


def test_the_history_chart_is_a_png_and_none_without_history() -> None:
    from model_monitoring.end_card import history_chart

    assert history_chart(pd.DataFrame(), SETTINGS) is None
    history = pd.DataFrame({"metrics.accuracy": [0.9, 0.6], "metrics.drifted_columns": [0.0, 1.0]})
    chart = history_chart(history, SETTINGS)
    assert chart is not None and chart.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("chart", [None, b"\x89PNG fake"])
def test_the_monitoring_summary_shows_alerts_figures_and_the_chart(chart: bytes | None) -> None:
    from metaflow.cards import Image, Markdown, Table

    from model_monitoring.end_card import monitoring_summary

    calm = monitoring_summary([], {"rows": 300.0}, chart)
    alarmed = monitoring_summary(["Data drift detected in island."], {"rows": 300.0}, chart)

    assert sum(isinstance(c, Table) for c in calm) == 1
    assert any(isinstance(c, Markdown) and "No alerts" in c._text for c in calm)
    assert any(isinstance(c, Markdown) and "island" in c._text for c in alarmed)
    assert not any(isinstance(c, Markdown) and "No alerts" in c._text for c in alarmed)
    assert sum(isinstance(c, Image) for c in alarmed) == (chart is not None)


def test_the_card_section_shows_both_models_the_finding_and_the_matrices(
    data: pd.DataFrame, tmp_path: Path
) -> None:
    from metaflow.cards import Markdown, Table

    from model_monitoring.end_card import shadow_section
    from model_monitoring.shadow_comparison import challenger_finding, shadow_comparison

    comparison = shadow_comparison(mf.shadow_store(tmp_path / "c.db", data, 250, 20, 5))
    finding = challenger_finding(comparison, PromotionSettings())
    components = shadow_section(comparison.as_dict(), finding)
    text = "\n".join(c._text for c in components if isinstance(c, Markdown))
    assert "Champion v6 and shadow v7" in text
    assert "FINDING: the challenger is better" in text
    assert "McNemar" in text
    tables = [c for c in components if isinstance(c, Table)]
    assert len(tables) == 2
    assert shadow_section(None, None) == []
