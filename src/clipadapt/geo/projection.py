"""Lon/lat rings to SVG paths: Web Mercator (the projection of web maps, so the cells
look as people expect), fitted to a fixed-width view box."""

from __future__ import annotations

import math

MAX_LAT = 85.05112878  # Web Mercator's cut-off: beyond it y runs to infinity


def mercator(lon: float, lat: float) -> tuple[float, float]:
    """(x, y) on the unit Web Mercator plane, y growing northwards."""
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    return math.radians(lon), math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def fit_paths(rings: list[list[tuple[float, float]]], width: float = 960.0, max_height: float = 720.0,
              margin: float = 10.0) -> tuple[list[str], list[tuple[float, ...]], float, float]:
    """(SVG path data per ring, (xmin, ymin, xmax, ymax) per ring, view box width, height):
    every ring projected and scaled together so that their extent fills the box (north
    up, aspect kept)."""
    projected = [[mercator(lon, lat) for lon, lat in ring] for ring in rings]
    xs = [x for ring in projected for x, _ in ring] or [0.0]
    ys = [y for ring in projected for _, y in ring] or [0.0]
    span_x, span_y = max(max(xs) - min(xs), 1e-12), max(max(ys) - min(ys), 1e-12)
    scale = min((width - 2 * margin) / span_x, (max_height - 2 * margin) / span_y)
    height = span_y * scale + 2 * margin
    x0 = min(xs) - (width - 2 * margin - span_x * scale) / 2 / scale  # centred horizontally
    y1 = max(ys)
    paths, boxes = [], []
    for ring in projected:
        screen = [(margin + (x - x0) * scale, margin + (y1 - y) * scale) for x, y in ring[:-1]]
        # 3 decimals: a city-wide view of resolution-12 cells still draws them as hexagons when zoomed in
        paths.append("M" + "L".join(f"{x:.3f},{y:.3f}" for x, y in screen) + "Z")
        boxes.append((min(x for x, _ in screen), min(y for _, y in screen), max(x for x, _ in screen),
                      max(y for _, y in screen)))
    return paths, boxes, width, round(height, 2)
