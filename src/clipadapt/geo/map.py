"""`clipadapt aggregate --map`: one self-contained HTML page, a choropleth of class shares
per H3 cell.

Inline SVG (cells projected to Web Mercator and fitted to the extent), inline CSS and
inline JavaScript: it opens offline and never contacts anyone (no tiles, no fonts, no
scripts from elsewhere). The numbers are embedded as JSON; the page colours the cells
for the chosen attribute, class and estimator, and shows a tooltip per cell on hover or
keyboard focus.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np

from clipadapt.errors import ClipAdaptError
from clipadapt.geo.grouping import H3_COLUMN
from clipadapt.geo.map_assets import CSS, PALETTE, script
from clipadapt.geo.projection import fit_paths
from clipadapt.geo.writers import cell_rings

ESTIMATORS = (("expected", "expected share (mean probability)"), ("top", "top-class share"))
_FIELDS = {"expected": "expected_share", "expected_low": "expected_low", "expected_high": "expected_high",
           "top": "top_share", "top_low": "top_low", "top_high": "top_high"}


def check_map_path(path: Path, has_cells: bool) -> None:
    """ClipAdaptError for a map that is not .html or has no H3 cells to draw."""
    if Path(path).suffix.lower() not in (".html", ".htm"):
        raise ClipAdaptError(f"--map {path}: the map is an HTML page; name it .html.")
    if not has_cells:
        raise ClipAdaptError("--map draws H3 cells: add --by h3:RES (e.g. --by h3:8).")


def map_data(result) -> dict:
    """The numbers the page shows: groups (cell and other keys) in path order, and per
    attribute its classes, n, small flags and every share with its interval per group
    (null where a group has no images for the attribute)."""
    table = result.table
    keys = list(result.keys)
    group_of = table.groupby(keys, sort=False).ngroup().to_numpy()
    first = table.drop_duplicates(keys)
    others = [k for k in keys if k != H3_COLUMN]
    groups = [{"cell": row[H3_COLUMN], "keys": {k: row[k] for k in others}} for row in first.to_dict("records")]
    count = len(groups)
    attributes = {}
    for name in dict.fromkeys(table["attribute"]):
        rows = (table["attribute"] == name).to_numpy()
        sub, g = table[rows], group_of[rows]
        classes = list(dict.fromkeys(sub["class"]))
        k = sub["class"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        n = np.full(count, -1, dtype=np.int64)
        n[g] = sub["n"].to_numpy()
        small = np.zeros(count, dtype=bool)
        small[g] = sub["small"].to_numpy(dtype=bool)
        values = []
        for j in range(len(classes)):
            mine = k == j
            per_class = {}
            for field, column in _FIELDS.items():
                column_values = np.full(count, np.nan)
                column_values[g[mine]] = sub[column].to_numpy(dtype=np.float64)[mine]
                per_class[field] = [None if v != v else round(float(v), 6) for v in column_values]
            values.append(per_class)
        attributes[name] = {"classes": classes, "n": [None if v < 0 else int(v) for v in n],
                            "small": small.tolist(), "values": values}
    return {"groups": groups, "attributes": attributes, "confidence": result.confidence,
            "small_below": result.small_below}


def zoom_boxes(groups: list[dict], boxes: list[tuple[float, ...]]) -> dict:
    """{key name, {value: [x, y, width, height]}}: the extent of each value of the first
    grouping column besides h3 (e.g. each city), for the page's 'zoom to' list; {} when
    there is none."""
    if not groups or not groups[0]["keys"]:
        return {}
    name = next(iter(groups[0]["keys"]))
    extents: dict[str, list[float]] = {}
    for group, (x0, y0, x1, y1) in zip(groups, boxes):
        box = extents.setdefault(str(group["keys"][name]), [x0, y0, x1, y1])
        box[:] = [min(box[0], x0), min(box[1], y0), max(box[2], x1), max(box[3], y1)]
    return {"key": name, "extents": {v: [round(b[0], 3), round(b[1], 3), round(b[2] - b[0], 3), round(b[3] - b[1], 3)]
                                     for v, b in sorted(extents.items())}}


def render_map(result, title: str | None = None) -> str:
    """The HTML page for an Aggregate grouped by H3 cells."""
    if H3_COLUMN not in result.keys:
        raise ClipAdaptError("--map draws H3 cells: add --by h3:RES (e.g. --by h3:8).")
    if not len(result.table):
        raise ClipAdaptError("--map: no cell has images to draw (every group was left out; see the counts above).")
    data = map_data(result)
    rings = cell_rings(g["cell"] for g in data["groups"])
    paths, boxes, width, height = fit_paths([rings[g["cell"]] for g in data["groups"]])
    data["cell_width"] = float(np.median([b[2] - b[0] for b in boxes]))
    data["zoom"] = zoom_boxes(data["groups"], boxes)
    cells = "\n".join(f'<path data-g="{i}" data-cell="{escape(g["cell"])}" tabindex="0" d="{d}"/>'
                      for i, (g, d) in enumerate(zip(data["groups"], paths)))
    attribute_options = "".join(f'<option value="{escape(a)}">{escape(a)}</option>' for a in data["attributes"])
    estimator_options = "".join(f'<option value="{v}">{escape(label)}</option>' for v, label in ESTIMATORS)
    gradient = "".join(f'<stop offset="{i / (len(PALETTE) - 1):.3f}" stop-color="{c}"/>' for i, c in enumerate(PALETTE))
    zoom_control = ""
    if data["zoom"]:
        zoom_options = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in data["zoom"]["extents"])
        zoom_control = (f'<label>zoom to {escape(data["zoom"]["key"])} <select id="zoom"><option value="">(whole '
                        f'extent)</option>{zoom_options}</select></label>')
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    heading = escape(title or f"Class shares per H3 cell (resolution {result.h3_resolution})")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>clipadapt aggregate: {heading}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{heading}</h1>
<p class="summary">{escape(result.summary())}</p>
<div class="controls">
<label>attribute <select id="attribute">{attribute_options}</select></label>
<label>class <select id="class"></select></label>
<label>estimator <select id="estimator">{estimator_options}</select></label>
{zoom_control}
<button type="button" id="reset">whole extent</button>
</div>
<p class="note">Scroll over the map to zoom, drag to move; hover or tab to a cell for its numbers.</p>
<svg id="map" viewBox="0 0 {width:g} {height:g}" role="img" aria-label="map of class shares per H3 cell">
<defs>
<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
<rect width="6" height="6" fill="#e6e6e6"/><line x1="0" y1="0" x2="0" y2="6" stroke="#8c8c8c" stroke-width="2"/>
</pattern>
<linearGradient id="ramp">{gradient}</linearGradient>
</defs>
<g id="cells">
{cells}
</g>
</svg>
<div class="legend">
<div><div id="legend-title"></div>
<svg width="240" height="30" aria-hidden="true"><rect x="0" y="0" width="240" height="14" fill="url(#ramp)"/>
<text id="legend-low" x="0" y="28" font-size="11"></text>
<text id="legend-mid" x="120" y="28" font-size="11" text-anchor="middle"></text>
<text id="legend-high" x="240" y="28" font-size="11" text-anchor="end"></text></svg></div>
<div><svg class="swatch" viewBox="0 0 18 12" aria-hidden="true"><rect width="18" height="12" fill="url(#hatch)"/></svg>
small group: too few images to colour (numbers in the tooltip)</div>
<div><span class="swatch" style="background:#f3f3f3"></span>no images for this attribute</div>
</div>
<p class="note">Expected share: the mean of the calibrated probabilities of the cell's images (unbiased when the
model is calibrated). Top-class share: the fraction of images whose most likely class it is. Intervals:
{round(100 * result.confidence)}% (normal for the expected share, Wilson for the top-class share). The colour
scale runs from 0 to the largest share among the cells that are not small.</p>
<div id="tooltip" role="status" hidden></div>
<script type="application/json" id="map-data">{payload}</script>
<script>{script()}</script>
</body>
</html>
"""
