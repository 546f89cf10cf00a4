"""GeoParquet 1.1 for point tables: a `geometry` column of WKB points built from lon/lat
columns, and the `geo` file metadata that GIS tools (GeoPandas, DuckDB spatial, QGIS,
GDAL) read. No geopandas or shapely: the points are encoded here with numpy.

What is written (GeoParquet 1.1.0, https://geoparquet.org/releases/v1.1.0):
- `geometry`: BYTE_ARRAY, optional (nullable). Each value is an ISO WKB Point, little
  endian: byte order 1, geometry type 1 (uint32), x = longitude, y = latitude (float64),
  21 bytes. A row whose coordinates are missing (NaN) or outside lat [-90, 90] /
  lon [-180, 180] gets a null geometry; its lat/lon columns stay as they were.
- `geo` metadata: version "1.1.0", primary_column "geometry", and for that column
  encoding "WKB", geometry_types ["Point"] and the bbox of the valid points
  ([xmin, ymin, xmax, ymax], left out when there are none). No `crs`: the spec reads
  an absent crs as OGC:CRS84 (WGS 84, longitude then latitude), which is what GSS's
  lat/lon are. (A `"crs": null` would mean "unknown", so the key is left out instead.)

Free of torch; `clipadapt aggregate` can reuse it for its own point tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipadapt.io import atomic_write

GEO_VERSION = "1.1.0"
GEOMETRY = "geometry"
_POINT = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])  # packed: 21 bytes
_WKB_LITTLE_ENDIAN, _WKB_POINT = 1, 1


def valid_points(lon, lat) -> np.ndarray:
    """Which rows hold a usable WGS 84 point: both coordinates finite and in range."""
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN compares False: not valid, as wanted
        return np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)


def point_array(lon, lat) -> pa.BinaryArray:
    """WKB points (little endian) for every row, null where the point is not valid.

    Built as one Arrow buffer (offsets + bytes) rather than a Python bytes object per
    row: a 10 M-row GSS table takes a second, not a minute."""
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    valid = valid_points(lon, lat)
    points = np.zeros(int(valid.sum()), dtype=_POINT)
    points["order"], points["type"] = _WKB_LITTLE_ENDIAN, _WKB_POINT
    points["x"], points["y"] = lon[valid], lat[valid]
    # null rows take no bytes: their offset does not move
    offsets = np.concatenate([[0], np.cumsum(np.where(valid, _POINT.itemsize, 0))]).astype(np.int32)
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
        point = np.frombuffer(wkb, dtype=_POINT) if len(wkb) == _POINT.itemsize else None
        if point is None or point["order"][0] != _WKB_LITTLE_ENDIAN or point["type"][0] != _WKB_POINT:
            raise ValueError(f"row {i}: not a little-endian 2-D WKB point ({len(wkb)} bytes)")
        lon[i], lat[i] = point["x"][0], point["y"][0]
    return lon, lat


def geo_metadata(lon, lat, column: str = GEOMETRY) -> dict:
    """The `geo` file metadata for a point column made from `lon` / `lat`."""
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    valid = valid_points(lon, lat)
    meta: dict = {"encoding": "WKB", "geometry_types": ["Point"]}
    if valid.any():
        meta["bbox"] = [float(lon[valid].min()), float(lat[valid].min()), float(lon[valid].max()),
                        float(lat[valid].max())]
    return {"version": GEO_VERSION, "primary_column": column, "columns": {column: meta}}


def with_points(table: pa.Table, lon: str = "lon", lat: str = "lat", column: str = GEOMETRY) -> pa.Table:
    """`table` with a WKB point column `column` appended (from its `lon` / `lat` columns)
    and the `geo` metadata in its schema (beside what is there, pandas' included)."""
    lons = table.column(lon).to_numpy(zero_copy_only=False).astype(np.float64)
    lats = table.column(lat).to_numpy(zero_copy_only=False).astype(np.float64)
    table = table.append_column(pa.field(column, pa.binary(), nullable=True), point_array(lons, lats))
    geo = json.dumps(geo_metadata(lons, lats, column)).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": geo})


def to_geoarrow(frame, lon: str = "lon", lat: str = "lat", column: str = GEOMETRY) -> pa.Table:
    """A pandas DataFrame holding `lon` / `lat` as an Arrow table ready for GeoParquet."""
    return with_points(pa.Table.from_pandas(frame, preserve_index=False), lon, lat, column)


def write_geoparquet(frame, path: Path, lon: str = "lon", lat: str = "lat", column: str = GEOMETRY) -> Path:
    """Write `frame` (pandas, with `lon` / `lat`) as GeoParquet, atomically."""
    table = to_geoarrow(frame, lon, lat, column)
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))
    return Path(path)


def read_geo_metadata(path: Path) -> dict | None:
    """The `geo` metadata of a Parquet file, or None for plain Parquet."""
    raw = (pq.read_schema(path).metadata or {}).get(b"geo")
    return json.loads(raw) if raw else None
