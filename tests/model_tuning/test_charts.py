"""The tuning card's SVG charts (src/model_tuning/charts.py)."""

from __future__ import annotations

import pytest
from support.svg import SVG, parse_svg, polyline_points

from model_tuning.charts import Scatter, bars_svg, scatter_svg


def texts(svg: str) -> list[str]:
    return [element.text for element in parse_svg(svg).iter(f"{SVG}text")]


def test_scatter_panels_sit_in_rows_of_three_with_a_dot_per_point() -> None:
    panels = [Scatter(f"panel {i}", [(1, 0.5), (2, 0.7)], x_label="trial") for i in range(4)]
    svg = parse_svg(scatter_svg(panels))
    assert (svg.get("width"), svg.get("height")) == ("1380", "600")
    assert len(list(svg.iter(f"{SVG}circle"))) == 8


def test_the_best_so_far_is_a_line_and_pruned_trials_are_grey() -> None:
    panel = Scatter("t", [(0, 0.5), (1, 0.9), (2, 0.7)], muted=[False, False, True],
                    line=[(0, 0.5), (1, 0.9), (2, 0.9)])  # fmt: skip
    svg = parse_svg(scatter_svg([panel]))
    [line] = svg.iter(f"{SVG}polyline")
    points = polyline_points(line)
    assert len(points) == 3 and points[1][1] == points[2][1]  # flat once the best holds
    colours = [circle.get("fill") for circle in svg.iter(f"{SVG}circle")]
    assert colours[2] != colours[0] == colours[1]


def test_a_log_axis_labels_powers_of_ten_and_choices_label_their_values() -> None:
    log = scatter_svg([Scatter("lr", [(0.001, 0.5), (0.1, 0.9)], log_x=True)])
    assert {"0.001", "0.01", "0.1"} <= set(texts(log))
    named = scatter_svg([Scatter("batch", [(0, 0.5), (2, 0.9)], x_names=["8", "16", "32"])])
    assert {"8", "16", "32"} <= set(texts(named))


def test_bars_are_as_long_as_their_value() -> None:
    svg = parse_svg(bars_svg("importance", {"epochs": 0.75, "dropout": 0.25}))
    widths = [float(rect.get("width")) for rect in svg.iter(f"{SVG}rect")][1:]  # not the page
    assert widths[0] == pytest.approx(3 * widths[1])
    assert {"epochs", "dropout", "0.75", "0.25"} <= set(
        texts(bars_svg("i", {"epochs": 0.75, "dropout": 0.25}))
    )


def test_an_empty_chart_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one panel"):
        scatter_svg([])
