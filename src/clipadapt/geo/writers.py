"""Writing an aggregate: GeoParquet (.parquet with H3 cells), Parquet, GeoJSON or CSV,
chosen by the file's extension, each written atomically (a temporary file beside the
target, renamed over it: a failure leaves no half-written file)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from clipadapt.errors import ClipAdaptError
from clipadapt.geo.cells import cell_ring
from clipadapt.geo.grouping import H3_COLUMN
from clipadapt.geoparquet import geo_metadata, polygon_wkb, rings_bbox, with_geometry
from clipadapt.io import atomic_write

METADATA_KEY = b"clipadapt:aggregate"  # the run's settings and counts, beside `geo`
FORMATS = (".parquet", ".geoparquet", ".geojson", ".csv")


def output_format(out: Path, has_cells: bool) -> str:
    """'parquet', 'geojson' or 'csv' by extension; ClipAdaptError for anything else,
    or GeoJSON without cells to draw."""
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise ClipAdaptError(f"--out {out}: use a .parquet (GeoParquet when grouped by h3), .geojson or .csv "
                             "file name.")
    if suffix == ".geojson" and not has_cells:
        raise ClipAdaptError(f"--out {out}: GeoJSON needs polygons, so group by h3:RES (e.g. --by h3:8), or write "
                             ".parquet or .csv.")
    return "parquet" if suffix in (".parquet", ".geoparquet") else suffix[1:]


def write_aggregate(result, out: Path) -> Path:
    """Write `result` (an Aggregate) to `out` in the format its extension names."""
    out = Path(out)
    has_cells = H3_COLUMN in result.keys and result.h3_resolution is not None
    kind = output_format(out, has_cells)
    if kind == "csv":
        atomic_write(out, lambda p: result.table.to_csv(p, index=False))
    elif kind == "geojson":
        text = json.dumps(geojson(result), separators=(",", ":"), allow_nan=False)
        atomic_write(out, lambda p: p.write_text(text, encoding="utf-8"))
    else:
        table = arrow_table(result, has_cells)
        import pyarrow.parquet as pq

        atomic_write(out, lambda p: pq.write_table(table, p))
    return out


def cell_rings(names) -> dict[str, list[tuple[float, float]]]:
    """Each distinct cell's boundary ring, computed once per cell (not per output row)."""
    return {name: cell_ring(name) for name in dict.fromkeys(names)}


def arrow_table(result, has_cells: bool):
    """The table as pyarrow, with a WKB `geometry` column and GeoParquet's `geo` metadata
    when grouped by H3 cells; the run's counts under clipadapt:aggregate either way."""
    import pyarrow as pa

    table = pa.Table.from_pandas(result.table, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(result.to_json()).encode()
    table = table.replace_schema_metadata(metadata)
    if has_cells:
        rings = cell_rings(result.table[H3_COLUMN])
        polygons = pa.array([polygon_wkb(rings[c]) for c in result.table[H3_COLUMN]], pa.binary())
        table = with_geometry(table, polygons, geo_metadata(["Polygon"], rings_bbox(rings.values()),
                                                            orientation="counterclockwise"))
    return table


def geojson(result) -> dict:
    """A FeatureCollection: one Polygon feature per output row (cell, attribute, class),
    the row's values as properties; the run's counts as a foreign member."""
    table = result.table
    rings = cell_rings(table[H3_COLUMN])
    features = []
    for row in table.to_dict(orient="records"):
        properties = {k: _plain(v) for k, v in row.items()}
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [list(p) for p in rings[row[H3_COLUMN]]]]}, "properties": properties})
    return {"type": "FeatureCollection", "clipadapt": result.to_json(), "features": features}


def _plain(value):
    """A JSON-safe Python value (numpy scalars unwrapped, NaN as null)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
