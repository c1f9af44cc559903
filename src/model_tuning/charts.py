"""The tuning card's charts as SVG: scatter plots (with an optional line) and bars.

`common.charts` draws line charts over epochs; a search needs points at any x (a
learning rate, on a log scale if it was searched on one; a list of choices, evenly
spaced) and a bar per parameter. Same sizes, fonts, colours and round ticks
(`common.charts.nice_ticks`), no plotting library: the card's task never imports one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from common.charts import (
    FONT,
    GRID_COLOUR,
    LINE_COLOUR,
    MARGIN_BOTTOM,
    MARGIN_LEFT,
    MARGIN_RIGHT,
    MARGIN_TOP,
    PANEL_HEIGHT,
    PANEL_WIDTH,
    TITLE_FONT,
    nice_ticks,
)

POINT_COLOUR, MUTED_COLOUR, BEST_COLOUR = "#1f77b4", "#bbb", "#d62728"
COLUMNS = 3


@dataclass(frozen=True)
class Scatter:
    """Points (x, y), drawn as dots; `muted` ones (pruned trials) in grey; `line` as a
    polyline over them. `x_names` puts named categories at x = 0, 1, ...; `log_x` draws
    x on a log scale."""

    title: str
    points: Sequence[tuple[float, float]]
    x_label: str = ""
    muted: Sequence[bool] = ()
    line: Sequence[tuple[float, float]] = ()
    log_x: bool = False
    x_names: Sequence[str] = ()


@dataclass(frozen=True)
class _Frame:
    """A panel's plotting area and the data range it maps onto it."""

    left: float
    top: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def x(self, value: float) -> float:
        low, high = self.x_range
        width = PANEL_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        return self.left + MARGIN_LEFT + (value - low) / (high - low) * width

    def y(self, value: float) -> float:
        low, high = self.y_range
        bottom, height = (
            self.top + PANEL_HEIGHT - MARGIN_BOTTOM,
            PANEL_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM,
        )
        return bottom - (value - low) / (high - low) * height


def _x_ticks(panel: Scatter, xs: list[float]) -> tuple[list[float], list[str]]:
    """Tick positions (in drawn units) and their labels."""
    if panel.x_names:
        return [float(i) for i in range(len(panel.x_names))], list(panel.x_names)
    if panel.log_x:
        low, high = math.floor(min(xs)), math.ceil(max(xs))
        ticks = [float(e) for e in range(low, high + 1)] if high > low else [low - 0.5, low + 0.5]
        return ticks, [f"{10**t:g}" for t in ticks]
    ticks = nice_ticks(min(xs), max(xs), count=5)
    return ticks, [f"{t:g}" for t in ticks]


def _scatter_svg(panel: Scatter, left: float, top: float) -> list[str]:
    transform = (lambda v: math.log10(v)) if panel.log_x else (lambda v: v)
    points = [(transform(x), y) for x, y in panel.points if math.isfinite(y)]
    line = [(transform(x), y) for x, y in panel.line if math.isfinite(y)]
    xs = [x for x, _ in points + line] or [0.0]
    ys = [y for _, y in points + line] or [0.0]
    x_ticks, x_labels = _x_ticks(panel, xs)
    y_ticks = nice_ticks(min(ys), max(ys))
    x_span = (
        (min(x_ticks[0], min(xs)) - 0.5, max(x_ticks[-1], max(xs)) + 0.5)
        if panel.x_names
        else (min(x_ticks[0], min(xs)), max(x_ticks[-1], max(xs)))
    )
    frame = _Frame(left, top, x_span, (y_ticks[0], y_ticks[-1]))
    parts = _axes(
        frame, panel.title, panel.x_label, list(zip(x_ticks, x_labels, strict=True)), y_ticks
    )
    if len(line) > 1:
        drawn = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in line)
        parts.append(
            f'<polyline points="{drawn}" fill="none" stroke="{BEST_COLOUR}" stroke-width="2"/>'
        )
    muted = list(panel.muted) + [False] * (len(points) - len(panel.muted))
    for (x, y), grey in zip(points, muted, strict=False):
        colour = MUTED_COLOUR if grey else POINT_COLOUR
        parts.append(f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="4" fill="{colour}"/>')
    return parts


def _text(x: float, y: float, content: str, anchor: str = "middle", font: str = FONT) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {font}>{escape(content)}</text>'


def _rule(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{GRID_COLOUR}"/>'


def _axes(
    frame: _Frame, title: str, x_label: str, x_ticks: list[tuple[float, str]], y_ticks: list[float]
) -> list[str]:
    """Title, grid, tick labels, frame and x label of one panel."""
    plot_left, plot_right = frame.left + MARGIN_LEFT, frame.left + PANEL_WIDTH - MARGIN_RIGHT
    plot_top, plot_bottom = frame.top + MARGIN_TOP, frame.top + PANEL_HEIGHT - MARGIN_BOTTOM
    centre = (plot_left + plot_right) / 2
    parts = [_text(centre, frame.top + 18, title, font=TITLE_FONT)]
    for tick in y_ticks:
        y = frame.y(tick)
        parts.append(_rule(plot_left, y, plot_right, y))
        parts.append(_text(plot_left - 6, y + 4, f"{tick:g}", anchor="end"))
    for position, label in x_ticks:
        x = frame.x(position)
        parts.append(_rule(x, plot_top, x, plot_bottom))
        parts.append(_text(x, plot_bottom + 16, label))
    parts.append(
        f'<rect x="{plot_left:.1f}" y="{plot_top}" width="{plot_right - plot_left:.1f}" '
        f'height="{plot_bottom - plot_top}" fill="none" stroke="#444"/>'
    )
    if x_label:
        parts.append(_text(centre, frame.top + PANEL_HEIGHT - 8, x_label))
    return parts


def scatter_svg(panels: Sequence[Scatter], columns: int = COLUMNS) -> str:
    """The panels in rows of `columns`, as one SVG document."""
    if not panels:
        raise ValueError("a chart needs at least one panel")
    across = min(columns, len(panels))
    rows = -(-len(panels) // across)
    parts = []
    for index, panel in enumerate(panels):
        parts += _scatter_svg(
            panel, (index % across) * PANEL_WIDTH, (index // across) * PANEL_HEIGHT
        )
    return _document(across * PANEL_WIDTH, rows * PANEL_HEIGHT, parts)


def bars_svg(title: str, values: dict[str, float]) -> str:
    """One horizontal bar per name, in the order given; values in [0, 1]."""
    row, label_width, width = 28, 140, PANEL_WIDTH
    height = MARGIN_TOP + row * max(len(values), 1) + 10
    parts = [_text(width / 2, 18, title, font=TITLE_FONT)]
    room = width - label_width - MARGIN_RIGHT - 50
    for index, (name, value) in enumerate(values.items()):
        y = MARGIN_TOP + index * row
        length = max(0.0, min(1.0, value)) * room
        parts.append(_text(label_width - 8, y + 17, name, anchor="end"))
        parts.append(
            f'<rect x="{label_width}" y="{y + 4}" width="{length:.1f}" '
            f'height="{row - 8}" fill="{LINE_COLOUR}"/>'
        )
        parts.append(_text(label_width + length + 6, y + 17, f"{value:.2f}", anchor="start"))
    return _document(width, height, parts)


def _document(width: float, height: float, parts: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            *parts,
            "</svg>",
        ]
    )
