"""Small SVG charts for the pipelines' cards, drawn without a plotting library.

The tasks that show a chart are short-lived processes: importing Matplotlib there
costs more than the rest of the card, and on a user's first run it also builds its
font cache. A chart of a few dozen points is a few lines of SVG, which every browser
draws; Metaflow's `Image` takes it as a data URI.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PANEL_WIDTH = 460
PANEL_HEIGHT = 300
# Space around the plotting area for the title, tick labels and the axis label.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 30, 44
LINE_COLOUR, GRID_COLOUR = "#1f77b4", "#ddd"
FONT = 'font-family="sans-serif" font-size="12"'
TITLE_FONT = 'font-family="sans-serif" font-size="14"'


@dataclass(frozen=True)
class Panel:
    """One line chart: `values[i]` is drawn at x = i + 1 (an epoch).

    A value that is not finite (a loss that diverged) is not drawn: the line breaks there.
    """

    title: str
    values: Sequence[float]
    x_label: str = ""


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """About `count` evenly spaced round numbers (1, 2, 2.5 or 5 times a power of ten)
    that cover [low, high]; whole numbers only when `integer` is set."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range must be finite, got [{low}, {high}]")
    if high < low:
        low, high = high, low
    if high == low:
        low, high = low - 0.5, high + 0.5
    raw_step = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    multiples = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in multiples if m * magnitude >= raw_step)
    if integer:
        step = max(1.0, math.ceil(step))
    first = math.floor(low / step) * step
    last = math.ceil(high / step) * step
    return [round(first + i * step, 10) for i in range(round((last - first) / step) + 1)]


@dataclass(frozen=True)
class _Axes:
    """Where one panel's values land: its plotting area and the value range it spans."""

    left: float
    right: float
    top: float
    bottom: float
    x_low: float
    x_high: float
    y_low: float
    y_high: float

    @property
    def centre(self) -> float:
        return (self.left + self.right) / 2

    def x_of(self, x: float) -> float:
        width = self.right - self.left
        return self.left + (x - self.x_low) / (self.x_high - self.x_low) * width

    def y_of(self, y: float) -> float:
        height = self.bottom - self.top
        return self.bottom - (y - self.y_low) / (self.y_high - self.y_low) * height


def _panel_svg(panel: Panel, left: float) -> list[str]:
    """The SVG elements of one panel whose box starts at x = `left`."""
    count = max(len(panel.values), 1)
    finite = [v for v in panel.values if math.isfinite(v)] or [0.0]
    y_ticks = nice_ticks(min(finite), max(finite))
    x_ticks = [t for t in nice_ticks(1, count, count=6, integer=True) if 1 <= t <= count]
    # One point gets half a step of room each side instead of a zero-width axis.
    x_low, x_high = (0.5, 1.5) if count == 1 else (1, count)
    axes = _Axes(
        left + MARGIN_LEFT, left + PANEL_WIDTH - MARGIN_RIGHT, MARGIN_TOP,
        PANEL_HEIGHT - MARGIN_BOTTOM, x_low, x_high, y_ticks[0], y_ticks[-1],
    )  # fmt: skip
    title = (
        f'<text x="{axes.centre:.1f}" y="18" text-anchor="middle" {TITLE_FONT}>'
        f"{escape(panel.title)}</text>"
    )
    return [
        title,
        *_grid(axes, x_ticks, y_ticks),
        *_frame_and_label(axes, panel.x_label),
        *_line(axes, panel.values),
    ]


def _grid(axes: _Axes, x_ticks: list[float], y_ticks: list[float]) -> list[str]:
    """A grid line and a label at every tick: across for y's, down for x's."""
    parts = []
    for tick in y_ticks:
        y = axes.y_of(tick)
        parts.append(
            f'<line x1="{axes.left:.1f}" y1="{y:.1f}" x2="{axes.right:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID_COLOUR}"/>'
        )
        parts.append(
            f'<text x="{axes.left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
            f"{tick:g}</text>"
        )
    for tick in x_ticks:
        x = axes.x_of(tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="{axes.top}" x2="{x:.1f}" y2="{axes.bottom}" '
            f'stroke="{GRID_COLOUR}"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{axes.bottom + 16}" text-anchor="middle" {FONT}>{tick:g}</text>'
        )
    return parts


def _frame_and_label(axes: _Axes, x_label: str) -> list[str]:
    """The box around the plotting area, and the x axis's label under it, if any."""
    parts = [
        f'<rect x="{axes.left:.1f}" y="{axes.top}" width="{axes.right - axes.left:.1f}" '
        f'height="{axes.bottom - axes.top}" fill="none" stroke="#444"/>'
    ]
    if x_label:
        parts.append(
            f'<text x="{axes.centre:.1f}" y="{PANEL_HEIGHT - 8}" text-anchor="middle" {FONT}>'
            f"{escape(x_label)}</text>"
        )
    return parts


def _line(axes: _Axes, values: Sequence[float]) -> list[str]:
    """The values as a line, broken where one is not finite; a lone point as a dot."""
    segments: list[list[tuple[float, float]]] = [[]]
    for x, value in enumerate(values, start=1):
        if math.isfinite(value):
            segments[-1].append((axes.x_of(x), axes.y_of(value)))
        elif segments[-1]:
            segments.append([])
    parts = []
    for points in segments:
        if len(points) == 1:
            ((x, y),) = points
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{LINE_COLOUR}"/>')
        elif points:
            drawn = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline points="{drawn}" fill="none" stroke="{LINE_COLOUR}" stroke-width="2"/>'
            )
    return parts


def chart_svg(panels: Sequence[Panel]) -> str:
    """The panels side by side, as one SVG document."""
    if not panels:
        raise ValueError("a chart needs at least one panel")
    width = PANEL_WIDTH * len(panels)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{PANEL_HEIGHT}" '
        f'viewBox="0 0 {width} {PANEL_HEIGHT}">',
        f'<rect width="{width}" height="{PANEL_HEIGHT}" fill="white"/>',
    ]
    for index, panel in enumerate(panels):
        parts += _panel_svg(panel, left=index * PANEL_WIDTH)
    parts.append("</svg>")
    return "\n".join(parts)


def svg_data_uri(svg: str) -> str:
    """An SVG document as the data URI an HTML `<img>` (and Metaflow's `Image`) shows."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
