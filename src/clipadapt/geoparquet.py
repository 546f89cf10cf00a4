"""GeoParquet 1.1, written by hand: WKB geometries built with numpy / struct and the `geo`
file metadata that GIS tools (GeoPandas, DuckDB spatial, QGIS, GDAL, Kepler.gl) read. No
geopandas or shapely. One module for both writers of the project: `clipadapt predict`'s
points (an image's lon / lat) and `clipadapt aggregate`'s H3 cell polygons.

What is written (GeoParquet 1.1.0, https://geoparquet.org/releases/v1.1.0):
- a `geometry` column, BYTE_ARRAY, nullable: ISO WKB, little endian, x = longitude,
  y = latitude (float64). A point is 21 bytes; a point whose coordinates are missing (NaN)
  or outside lat [-90, 90] / lon [-180, 180] is a null geometry (its lat / lon columns
  stay as they were). A polygon is its closed rings, the exterior first.
- the `geo` metadata: version "1.1.0", primary_column "geometry", and for that column
  encoding "WKB", its geometry_types, the bbox of the geometries ([xmin, ymin, xmax, ymax],
  left out when there are none) and any extra keys (a polygon's orientation). No `crs`:
  the spec reads an absent crs as OGC:CRS84 (WGS 84, longitude then latitude), which is
  what GSS's lat / lon and H3's boundaries are. (A `"crs": null` would mean "unknown", so
  the key is left out instead.)

Free of torch; pyarrow is imported where a table is built, so `valid_points` (which
`predict` uses on CSV output too) needs numpy only.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

GEO_VERSION = "1.1.0"
GEOMETRY = "geometry"
_LITTLE_ENDIAN, _POINT, _POLYGON = 1, 1, 3
_POINT_BYTES = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])  # packed: 21 bytes


# ------------------------------------------------------------------ points
def valid_points(lon, lat) -> np.ndarray:
    """Which rows hold a usable WGS 84 point: both coordinates finite and in range."""
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN compares False: not valid, as wanted
        return np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)


def point_array(lon, lat) -> pa.BinaryArray:
    """WKB points (little endian) for every row, null where the point is not valid.

    Built as one Arrow buffer (offsets + bytes) rather than a Python bytes object per
    row: a 10 M-row GSS table takes a second, not a minute."""
    import pyarrow as pa

    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    valid = valid_points(lon, lat)
    points = np.zeros(int(valid.sum()), dtype=_POINT_BYTES)
    points["order"], points["type"] = _LITTLE_ENDIAN, _POINT
    points["x"], points["y"] = lon[valid], lat[valid]
    # null rows take no bytes: their offset does not move
    offsets = np.concatenate([[0], np.cumsum(np.where(valid, _POINT_BYTES.itemsize, 0))]).astype(np.int32)
    mask = pa.array(valid).buffers()[1] if not valid.all() else None
    return pa.Array.from_buffers(pa.binary(), len(valid), [mask, pa.py_buffer(offsets), pa.py_buffer(points.tobytes())],
                                 null_count=int((~valid).sum()))


def decode_points(array) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of WKB points as `point_array` writes them (any Arrow binary array or a
    list of bytes / None); NaN for a null geometry. Refuses any other WKB."""
    values = array.to_pylist() if hasattr(array, "to_pylist") else list(array)
    lon, lat = np.full(len(values), np.nan), np.full(len(values), np.nan)
    for i, wkb in enumerate(values):
        if wkb is None:
            continue
        point = np.frombuffer(wkb, dtype=_POINT_BYTES) if len(wkb) == _POINT_BYTES.itemsize else None
        if point is None or point["order"][0] != _LITTLE_ENDIAN or point["type"][0] != _POINT:
            raise ValueError(f"row {i}: not a little-endian 2-D WKB point ({len(wkb)} bytes)")
        lon[i], lat[i] = point["x"][0], point["y"][0]
    return lon, lat


def points_bbox(lon, lat) -> list[float] | None:
    """[xmin, ymin, xmax, ymax] of the valid points (None when there are none)."""
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    valid = valid_points(lon, lat)
    if not valid.any():
        return None
    return [float(lon[valid].min()), float(lat[valid].min()), float(lon[valid].max()), float(lat[valid].max())]


# ------------------------------------------------------------------ polygons
def polygon_wkb(*rings: list[tuple[float, float]]) -> bytes:
    """A little-endian WKB Polygon of closed rings of (x, y) = (lon, lat): the exterior
    ring first, then any holes."""
    parts = [struct.pack("<BII", _LITTLE_ENDIAN, _POLYGON, len(rings))]
    for ring in rings:
        parts.append(struct.pack("<I", len(ring)))
        parts.append(struct.pack(f"<{2 * len(ring)}d", *(v for point in ring for v in point)))
    return b"".join(parts)


def rings_bbox(rings) -> list[float] | None:
    """[xmin, ymin, xmax, ymax] over every point of `rings` (None when there are none)."""
    xs = [x for ring in rings for x, _ in ring]
    ys = [y for ring in rings for _, y in ring]
    return [min(xs), min(ys), max(xs), max(ys)] if xs else None


# ------------------------------------------------------------------ the file
def geo_metadata(geometry_types: list[str], bbox: list[float] | None, column: str = GEOMETRY, **extra) -> dict:
    """The `geo` file metadata for one WKB column (CRS84 by omission; see the module)."""
    meta: dict = {"encoding": "WKB", "geometry_types": list(geometry_types), **extra}
    if bbox is not None:  # optional in the spec; an empty table has no extent
        meta["bbox"] = [float(v) for v in bbox]
    return {"version": GEO_VERSION, "primary_column": column, "columns": {column: meta}}


def with_geometry(table: pa.Table, geometry: pa.Array, geo: dict, column: str = GEOMETRY) -> pa.Table:
    """`table` with the WKB column `geometry` appended as `column` and `geo` in its schema
    metadata (beside what is there, pandas' included)."""
    import pyarrow as pa

    table = table.append_column(pa.field(column, pa.binary(), nullable=True), geometry)
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": json.dumps(geo).encode()})


def with_points(table: pa.Table, lon: str = "lon", lat: str = "lat", column: str = GEOMETRY) -> pa.Table:
    """`table` with a WKB point column `column` made from its `lon` / `lat` columns, as GeoParquet."""
    lons = table.column(lon).to_numpy(zero_copy_only=False).astype(np.float64)
    lats = table.column(lat).to_numpy(zero_copy_only=False).astype(np.float64)
    return with_geometry(table, point_array(lons, lats), geo_metadata(["Point"], points_bbox(lons, lats), column),
                         column)


def to_geoarrow(frame, lon: str = "lon", lat: str = "lat", column: str = GEOMETRY) -> pa.Table:
    """A pandas DataFrame holding `lon` / `lat` as an Arrow table ready for GeoParquet."""
    import pyarrow as pa

    return with_points(pa.Table.from_pandas(frame, preserve_index=False), lon, lat, column)


def write_geoparquet(frame, path: Path, lon: str = "lon", lat: str = "lat", column: str = GEOMETRY) -> Path:
    """Write `frame` (pandas, with `lon` / `lat`) as GeoParquet points, atomically."""
    import pyarrow.parquet as pq

    from clipadapt.io import atomic_write

    table = to_geoarrow(frame, lon, lat, column)
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))
    return Path(path)


def read_geo_metadata(path: Path) -> dict | None:
    """The `geo` metadata of a Parquet file, or None for plain Parquet."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(b"geo")
    return json.loads(raw) if raw else None
