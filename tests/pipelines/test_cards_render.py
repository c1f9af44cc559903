"""The monitoring pipeline's cards, rendered by a real browser: headless Chromium.

An Evidently report is a page of data and a React application that draws it; a card
that is only the page's source proves nothing about what a person sees. Each card's
HTML is written to a file and loaded in Debian's `chromium` (installed by .ci/run; no
browser is downloaded at run time) with every host name unresolvable, so the page must
be self-contained. Without a `chromium` on PATH these tests skip, saying how to install
it; with REQUIRE_BROWSER=1 (set by .ci/run) they fail instead (support/browser.py).

The DOM Chromium dumps after running the scripts must hold the report's content,
drawn (Material UI elements, the figures, the column names), and neither Metaflow's
error card nor the HTML card's "no html specified" placeholder.

The runs are those of support/monitoring.py (shared with test_monitoring.py).
"""

from __future__ import annotations

import html
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import monitoring as mf
from support.browser import dump_dom

RENDER_TIMEOUT = 180  # seconds for one page, on a loaded machine
FEATURES = mf.project_schema().features
SHIFTED = mf.project_schema().numeric_features[0]
NO_DATA = "No production data with ground truth yet"
BROKEN_CARD_MARKERS = ("Card Render Failed", "Error Card", "no html specified")


@pytest.fixture(scope="module")
def runs(flows_runner: Callable[..., Any]) -> mf.MonitoringRuns:
    return mf.monitoring_runs(flows_runner, mf.FIRST_BATCH)


@dataclass
class Rendered:
    dom: str  # the DOM after the page's scripts ran
    text: str  # its visible text, whitespace collapsed

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.dom))


def visible_text(dom: str) -> str:
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    text = html.unescape(re.sub(r"<[^>]+>", " ", body))
    return re.sub(r"\s+", " ", text).strip()


def render(chromium: str, page: str, directory: Path, name: str) -> Rendered:
    """Load `page` (HTML text) in headless Chromium; the final DOM, checked for error cards."""
    dom = dump_dom(chromium, page, directory, name, timeout=RENDER_TIMEOUT)
    rendered = Rendered(dom, visible_text(dom))
    for marker in BROKEN_CARD_MARKERS:
        assert marker not in rendered.text, f"{name}: the page shows {marker!r}"
    return rendered


def card_html(scenario: mf.Scenario, step: str, card_type: str, card_id: str | None = None) -> str:
    from metaflow.cards import get_cards

    cards = list(get_cards(scenario.task(step), id=card_id))
    assert [card.type for card in cards] == [card_type], (
        f"{scenario.name}/{step}: cards {[card.type for card in cards]}"
    )
    return cards[0].get()


def evidently_card(
    chromium: str, runs: mf.MonitoringRuns, scenario: str, card_id: str, directory: Path
) -> Rendered:
    """The report card `card_id` of the scenario's `start` step, rendered."""
    page = card_html(runs[scenario], "start", "html", card_id)
    rendered = render(chromium, page, directory, f"{scenario}-{card_id}")
    # Drawn by React with Material UI: the source has none of these elements.
    assert rendered.count(r'class="Mui') >= 20, rendered.text[:2000]
    assert rendered.count(r'class="Mui') > page.count('class="Mui') + 20
    assert NO_DATA not in rendered.text
    return rendered


def test_chromium_is_installed(chromium: str) -> None:
    version = subprocess.run(
        [chromium, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert version.returncode == 0 and "Chromium" in version.stdout, version


def test_drift_card_renders_the_per_column_drift(
    chromium: str, runs: mf.MonitoringRuns, tmp_path: Path
) -> None:
    rendered = evidently_card(chromium, runs, "normal", "data_drift", tmp_path)
    assert "Dataset Drift" in rendered.text
    assert "Drifted Columns" in rendered.text
    assert "0 Drifted Columns" in rendered.text, rendered.text[:2000]
    for column in FEATURES:
        assert f"{column} " in rendered.text, column
    assert "Wasserstein" in rendered.text


def test_drift_card_of_drifted_traffic_shows_the_drifted_column(
    chromium: str, runs: mf.MonitoringRuns, tmp_path: Path
) -> None:
    rendered = evidently_card(chromium, runs, "drifted", "data_drift", tmp_path)
    assert "1 Drifted Columns" in rendered.text, rendered.text[:2000]
    assert "Dataset Drift is detected" in rendered.text
    # The table row of the shifted column says so; no other column's does.
    assert re.search(rf"{SHIFTED} num Detected", rendered.text), rendered.text[:3000]
    for column in FEATURES:
        if column != SHIFTED:
            assert not re.search(rf"{column} (num|cat) Detected", rendered.text), column


def test_summary_card_renders_every_column(
    chromium: str, runs: mf.MonitoringRuns, tmp_path: Path
) -> None:
    rendered = evidently_card(chromium, runs, "normal", "data_summary", tmp_path)
    for column in FEATURES:
        assert column in rendered.text, column
    assert "missing" in rendered.text
    assert "Duplicated row count" in rendered.text
    # Distributions are drawn as Plotly charts (SVG), not left as data.
    assert rendered.count(r'class="main-svg"') >= len(FEATURES), rendered.dom[:2000]


def test_classification_card_renders_the_accuracy(
    chromium: str, runs: mf.MonitoringRuns, tmp_path: Path
) -> None:
    rendered = evidently_card(chromium, runs, "normal", "classification", tmp_path)
    assert "Accuracy" in rendered.text
    assert "Confusion Matrix" in rendered.text
    for species in ("Adelie", "Chinstrap", "Gentoo"):
        assert species in rendered.text, species
    accuracy = runs["normal"].data().accuracy
    shown = [float(x) for x in re.findall(r"(\d\.\d+) Accuracy", rendered.text)]
    assert shown, rendered.text[:2000]
    assert shown[0] == pytest.approx(accuracy, abs=0.01)
    assert rendered.count(r'class="main-svg"') >= 1


@pytest.mark.parametrize("card_id", ["data_summary", "data_drift", "classification"])
def test_cards_without_production_data_say_so(
    chromium: str, runs: mf.MonitoringRuns, tmp_path: Path, card_id: str
) -> None:
    page = card_html(runs["empty"], "start", "html", card_id)
    rendered = render(chromium, page, tmp_path, f"empty-{card_id}")
    assert NO_DATA in rendered.text


def test_end_card_renders_the_history(
    chromium: str, runs: mf.MonitoringRuns, tmp_path: Path
) -> None:
    page = card_html(runs["normal"], "end", "default")
    rendered = render(chromium, page, tmp_path, "normal-end")
    assert "Monitoring" in rendered.text
    assert "No alerts" in rendered.text
    assert "History" in rendered.text, rendered.text[:2000]
    # The history chart is an image in the page, drawn from the run's figures.
    assert re.search(r'<img[^>]+src="data:image/png;base64,', rendered.dom)
    assert "accuracy" in rendered.text


def test_end_card_of_drifted_traffic_shows_the_alert(
    chromium: str, runs: mf.MonitoringRuns, tmp_path: Path
) -> None:
    page = card_html(runs["drifted"], "end", "default")
    rendered = render(chromium, page, tmp_path, "drifted-end")
    assert "ALERTS" in rendered.text
    assert f"Data drift detected in {SHIFTED}" in rendered.text
    assert "History" in rendered.text


@pytest.mark.parametrize("scenario", ["normal", "drifted"])
def test_end_card_names_every_failed_test_and_what_it_measured(
    chromium: str, runs: mf.MonitoringRuns, tmp_path: Path, scenario: str
) -> None:
    """ "No alerts" never sits beside an unexplained failure: each failed Evidently test
    is named on the card with what it measured, and the figures read as people read them."""
    data = runs[scenario].data()
    rendered = render(chromium, card_html(runs[scenario], "end", "default"), tmp_path, scenario)
    failed = data.failed_tests
    assert len(failed) == data.metrics["failed_tests"]
    for test in failed:
        assert test["name"] in rendered.text, test
        assert " ".join(test["description"].split()) in rendered.text, test
    if failed:
        assert f"Failed tests ({len(failed)})" in rendered.text
    if not data.alerts:
        expected = "No alerts, but" if failed else "No alerts."
        assert expected in rendered.text, rendered.text[:2000]
    drift = "yes" if data.drift_detected else "no"
    assert re.search(rf"drift_detected {drift}\b", rendered.text), rendered.text[:3000]


def test_end_card_of_drifted_traffic_names_the_failed_drift_test(
    chromium: str, runs: mf.MonitoringRuns, tmp_path: Path
) -> None:
    page = card_html(runs["drifted"], "end", "default")
    rendered = render(chromium, page, tmp_path, "drifted-failed-tests")
    assert "Failed tests" in rendered.text
    assert f"Value Drift for column {SHIFTED}" in rendered.text
    assert "Drift score is" in rendered.text and "The drift threshold is" in rendered.text
