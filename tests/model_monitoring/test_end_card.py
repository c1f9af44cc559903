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


def test_one_monitoring_run_gets_a_whole_number_run_axis_around_it() -> None:
    from matplotlib import pyplot as plt

    from model_monitoring.end_card import history_figure

    for runs in (1, 3):
        history = pd.DataFrame(
            {"metrics.accuracy": [0.9] * runs, "metrics.drifted_columns": [0.0] * runs}
        )
        figure = history_figure(history, SETTINGS)
        for axis in figure.axes:
            assert axis.get_xlim() == (0.5, runs + 0.5)
            low, high = axis.get_xlim()
            ticks = [tick for tick in axis.get_xticks() if low <= tick <= high]
            assert ticks == list(range(1, runs + 1)), ticks
        plt.close(figure)


FAILED = [
    {
        "report": "Data summary",
        "name": "Column 'culmen_length_mm' missing values: Less or Equal 150.000",
        "status": "FAIL",
        "description": "Column 'culmen_length_mm' missing values: Actual value 201.000 >= 150.000",
    }
]


def test_a_failed_test_that_raised_no_alert_is_named_beside_no_alerts() -> None:
    from metaflow.cards import Markdown, Table

    from model_monitoring.end_card import monitoring_summary

    components = monitoring_summary([], {"failed_tests": 1.0}, None, FAILED)
    text = "\n".join(c._text for c in components if isinstance(c, Markdown))
    assert "No alerts, but **1 Evidently test failed**" in text
    assert FAILED[0]["name"] in text and "Failed tests (1)" in text
    tables = [str(c.render()) for c in components if isinstance(c, Table)]
    assert "Actual value 201.000 >= 150.000" in tables[0] and "Data summary" in tables[0]
    assert "No alerts." in monitoring_summary([], {"failed_tests": 0.0}, None, [])[1]._text


def test_the_figures_read_yes_no_whole_counts_and_three_decimals() -> None:
    from metaflow.cards import Table

    from model_monitoring.end_card import monitoring_summary, shown_figure

    figures = {
        "rows": 300.0,
        "drift_detected": 1.0,
        "drifted_columns": 1.0,
        "failed_tests": 2.0,
        "accuracy": 0.8100961538461539,
        "challenger_better": 0.0,
        "shadow_p_value": 0.000123456,
    }
    shown = {name: shown_figure(name, value) for name, value in figures.items()}
    assert shown == {
        "rows": "300",
        "drift_detected": "yes",
        "drifted_columns": "1",
        "failed_tests": "2",
        "accuracy": "0.810",
        "challenger_better": "no",
        "shadow_p_value": "0.000123",
    }
    (table,) = [c for c in monitoring_summary([], figures, None) if isinstance(c, Table)]
    assert "0.8100961538461539" not in str(table.render())


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


def test_the_history_chart_draws_estimates_beside_the_realised_accuracy() -> None:
    from model_monitoring.end_card import history_chart

    history = pd.DataFrame(
        {
            "metrics.estimated_accuracy": [0.95, 0.96],
            "metrics.estimated_accuracy_low": [0.93, 0.94],
            "metrics.estimated_accuracy_high": [0.97, 0.98],
            "metrics.accuracy": [float("nan"), 0.94],  # the first run had no labels yet
            "metrics.drifted_columns": [0.0, 0.0],
        }
    )
    chart = history_chart(history, SETTINGS)
    assert chart is not None and chart.startswith(b"\x89PNG\r\n\x1a\n")
    without = history_chart(history.drop(columns="metrics.estimated_accuracy"), SETTINGS)
    assert without is not None and without != chart


ROWS_USED = {
    "labelled": {"version": "3", "rows": 0, "first": None, "last": None, "sources": {}},
    "recent": {
        "version": "3",
        "rows": 200,
        "first": "2026-01-01T10:00:00+00:00",
        "last": "2026-01-01T10:05:00+00:00",
        "sources": {"online": 200},
    },
}


def test_the_estimate_section_gives_the_estimate_its_band_and_the_rows_used() -> None:
    from model_monitoring.end_card import estimate_section

    estimate = {
        "accuracy": 0.95,
        "low": 0.92,
        "high": 0.98,
        "standard_error": 0.015,
        "rows": 200,
        "calibrated": True,
    }
    text = "\n".join(c._text for c in estimate_section(estimate, ROWS_USED, 0.7))
    assert "**0.950**, 95% band [0.920, 0.980], on 200 recent answers" in text
    assert "threshold 0.700." in text
    assert "calibrated at registration" in text
    assert "Reports and realised accuracy: no rows of version 3." in text
    assert "Estimate: 200 rows answered by version 3, 2026-01-01T10:00:00+00:00 to" in text
    assert "(200 online)" in text
    uncalibrated = {**estimate, "calibrated": False}
    assert "raw: no calibration" in estimate_section(uncalibrated, ROWS_USED, 0.7)[0]._text
    assert "nothing to estimate" in estimate_section(None, ROWS_USED, 0.7)[0]._text


def test_the_estimate_section_says_how_many_answers_were_outside_the_support() -> None:
    from model_monitoring.end_card import estimate_section

    estimate = {
        "accuracy": 0.47,
        "low": 0.44,
        "high": 0.5,
        "standard_error": 0.017,
        "rows": 500,
        "calibrated": True,
    }
    # An estimate recorded before supports were stored has no `outside_support`.
    plain = estimate_section(estimate, ROWS_USED, 0.7)[0]._text
    assert "No input support stored with this version: confidences only (plain CBPE)." in plain
    checked = estimate_section({**estimate, "outside_support": 363}, ROWS_USED, 0.7)[0]._text
    assert "363 of 500 answers (72.6%) outside the training support, counted as guesses." in checked


def test_the_estimate_history_is_a_table_of_estimated_and_realised_accuracy() -> None:
    from metaflow.cards import Table

    from model_monitoring.end_card import estimate_history

    assert estimate_history([]) == []
    runs = [
        {"when": "2026-01-01 10:00:00.123+00:00", "version": "3", "estimated": 0.95,
         "low": 0.92, "high": 0.98, "accuracy": None},
        {"when": "2026-01-02 10:00:00+00:00", "version": "3", "estimated": 0.95,
         "low": 0.92, "high": 0.98, "accuracy": 0.9333},
    ]  # fmt: skip
    heading, table = estimate_history(runs)
    assert isinstance(table, Table)
    assert "Estimated and realised accuracy" in heading._text
    rendered = str(table.render())
    assert "0.950" in rendered and "[0.920, 0.980]" in rendered and "0.933" in rendered
    assert "0.9333" not in rendered
    assert "2026-01-01 10:00:00" in rendered and "-" in rendered
