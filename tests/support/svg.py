"""Reading the SVG charts of common.charts back: the document, and a line's points."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

# The SVG namespace, as ElementTree spells it in a tag: `svg.findall(f"{SVG}polyline")`.
SVG = "{http://www.w3.org/2000/svg}"


def parse_svg(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


def polyline_points(polyline: ElementTree.Element) -> list[tuple[float, float]]:
    """The (x, y) points of a `<polyline>`, as numbers."""
    return [tuple(map(float, pair.split(","))) for pair in polyline.get("points", "").split()]
