"""Tests for common.charts: round ticks, one line per panel, drawn by a browser."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import pytest
from support.svg import SVG, parse_svg, polyline_points

from common.charts import Panel, chart_svg, nice_ticks, svg_data_uri


@pytest.mark.parametrize(
    ("low", "high", "count", "integer", "expected"),
    [
        (0.0, 1.0, 5, False, [0.0, 0.25, 0.5, 0.75, 1.0]),
        (0.31, 0.97, 5, False, [0.2, 0.4, 0.6, 0.8, 1.0]),
        (0.0213, 1.0986, 5, False, [0.0, 0.5, 1.0, 1.5]),
        (1, 50, 6, True, [0, 10, 20, 30, 40, 50]),
        (1, 3, 6, True, [1, 2, 3]),
        (2.0, 2.0, 5, False, [1.5, 1.75, 2.0, 2.25, 2.5]),
    ],
)
def test_ticks_are_round_and_cover_the_range(
    low: float, high: float, count: int, integer: bool, expected: list[float]
) -> None:
    ticks = nice_ticks(low, high, count=count, integer=integer)
    assert ticks == pytest.approx(expected)
    assert ticks[0] <= min(low, high) and ticks[-1] >= max(low, high)


def test_ticks_refuse_a_range_that_is_not_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0.0, math.nan)


def test_each_panel_draws_its_values_as_one_line_left_to_right() -> None:
    loss = [1.1 / epoch for epoch in range(1, 51)]
    accuracy = [min(0.4 + epoch / 60, 1.0) for epoch in range(1, 51)]
    svg = parse_svg(chart_svg([Panel("training loss", loss, "epoch"), Panel("accuracy", accuracy)]))

    assert svg.tag == f"{SVG}svg" and svg.get("width") == str(2 * 460)
    lines = svg.findall(f"{SVG}polyline")
    assert len(lines) == 2
    for line, values in zip(lines, (loss, accuracy), strict=True):
        drawn = polyline_points(line)
        assert len(drawn) == len(values)
        xs = [x for x, _ in drawn]
        assert xs == sorted(xs) and len(set(xs)) == len(xs)
        # SVG's y grows downwards: a falling loss is drawn rising on the page.
        ys = [y for _, y in drawn]
        order = sorted(range(len(values)), key=values.__getitem__)
        assert [ys[i] for i in order] == sorted(ys, reverse=True)
    texts = [element.text for element in svg.iter(f"{SVG}text")]
    assert "training loss" in texts and "accuracy" in texts and "epoch" in texts
    # The second panel is to the right of the first.
    assert min(x for x, _ in polyline_points(lines[1])) > max(
        x for x, _ in polyline_points(lines[0])
    )


def test_a_value_that_is_not_finite_breaks_the_line() -> None:
    svg = parse_svg(chart_svg([Panel("loss", [1.0, 0.8, math.nan, 0.5, 0.4, math.inf, 0.3])]))
    lines = [polyline_points(line) for line in svg.findall(f"{SVG}polyline")]
    assert [len(line) for line in lines] == [2, 2]
    # The lone last point is still shown, as a dot.
    assert len(svg.findall(f"{SVG}circle")) == 1


def test_one_epoch_is_a_dot_and_no_values_an_empty_panel() -> None:
    one = parse_svg(chart_svg([Panel("loss", [0.7])]))
    assert len(one.findall(f"{SVG}circle")) == 1 and not one.findall(f"{SVG}polyline")
    empty = parse_svg(chart_svg([Panel("loss", [])]))
    assert not empty.findall(f"{SVG}polyline") and not empty.findall(f"{SVG}circle")


def test_titles_are_escaped() -> None:
    svg = chart_svg([Panel("loss <train> & test", [1.0, 0.5])])
    assert "loss &lt;train&gt; &amp; test" in svg
    parse_svg(svg)


def test_a_chart_needs_a_panel() -> None:
    with pytest.raises(ValueError, match="at least one panel"):
        chart_svg([])


def test_the_data_uri_holds_the_svg() -> None:
    svg = chart_svg([Panel("loss", [1.0, 0.5])])
    uri = svg_data_uri(svg)
    prefix = "data:image/svg+xml;base64,"
    assert uri.startswith(prefix)
    assert base64.b64decode(uri[len(prefix) :]).decode() == svg


def test_a_browser_draws_the_chart(chromium: str, tmp_path: Path) -> None:
    from support.browser import decoded_image_sizes

    uri = svg_data_uri(chart_svg([Panel("loss", [1.0, 0.5, 0.3]), Panel("accuracy", [0.5, 0.9])]))
    page = f'<html><body><img id="chart" src="{uri}"></body></html>'
    dom, sizes = decoded_image_sizes(chromium, page, tmp_path, "chart", timeout=120)
    # A width and height of 0 would mean the browser could not decode the image.
    assert sizes == ["920x300"], dom[:2000]
