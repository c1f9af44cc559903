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


def _panel_svg(panel: Panel, left: float) -> list[str]:
    """The SVG elements of one panel whose box starts at x = `left`."""
    count = max(len(panel.values), 1)
    finite = [v for v in panel.values if math.isfinite(v)] or [0.0]
    y_ticks = nice_ticks(min(finite), max(finite))
    y_low, y_high = y_ticks[0], y_ticks[-1]
    x_ticks = [t for t in nice_ticks(1, count, count=6, integer=True) if 1 <= t <= count]
    # One point gets half a step of room each side instead of a zero-width axis.
    x_low, x_high = (0.5, 1.5) if count == 1 else (1, count)

    plot_left, plot_right = left + MARGIN_LEFT, left + PANEL_WIDTH - MARGIN_RIGHT
    plot_top, plot_bottom = MARGIN_TOP, PANEL_HEIGHT - MARGIN_BOTTOM

    def x_of(x: float) -> float:
        return plot_left + (x - x_low) / (x_high - x_low) * (plot_right - plot_left)

    def y_of(y: float) -> float:
        return plot_bottom - (y - y_low) / (y_high - y_low) * (plot_bottom - plot_top)

    centre = (plot_left + plot_right) / 2
    parts = [
        f'<text x="{centre:.1f}" y="18" text-anchor="middle" {TITLE_FONT}>'
        f"{escape(panel.title)}</text>"
    ]
    for tick in y_ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{plot_left:.1f}" y1="{y:.1f}" x2="{plot_right:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID_COLOUR}"/>'
        )
        parts.append(
            f'<text x="{plot_left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
            f"{tick:g}</text>"
        )
    for tick in x_ticks:
        x = x_of(tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="{plot_top}" x2="{x:.1f}" y2="{plot_bottom}" '
            f'stroke="{GRID_COLOUR}"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{plot_bottom + 16}" text-anchor="middle" {FONT}>{tick:g}</text>'
        )
    parts.append(
        f'<rect x="{plot_left:.1f}" y="{plot_top}" width="{plot_right - plot_left:.1f}" '
        f'height="{plot_bottom - plot_top}" fill="none" stroke="#444"/>'
    )
    if panel.x_label:
        parts.append(
            f'<text x="{centre:.1f}" y="{PANEL_HEIGHT - 8}" text-anchor="middle" {FONT}>'
            f"{escape(panel.x_label)}</text>"
        )

    segments: list[list[tuple[float, float]]] = [[]]
    for x, value in enumerate(panel.values, start=1):
        if math.isfinite(value):
            segments[-1].append((x_of(x), y_of(value)))
        elif segments[-1]:
            segments.append([])
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
