"""Well-known binary (ISO / OGC simple features) for polygons: GeoParquet's geometry
encoding, written by hand so that no geometry library is needed."""

from __future__ import annotations

import struct

_LITTLE_ENDIAN = 1
_POLYGON = 3


def polygon_wkb(*rings: list[tuple[float, float]]) -> bytes:
    """A little-endian WKB Polygon of closed rings of (x, y) = (lon, lat): the exterior
    ring first, then any holes."""
    parts = [struct.pack("<BII", _LITTLE_ENDIAN, _POLYGON, len(rings))]
    for ring in rings:
        parts.append(struct.pack("<I", len(ring)))
        parts.append(struct.pack(f"<{2 * len(ring)}d", *(v for point in ring for v in point)))
    return b"".join(parts)


def bounds(rings) -> list[float]:
    """[xmin, ymin, xmax, ymax] over every point of `rings` (GeoParquet's bbox order)."""
    xs = [x for ring in rings for x, _ in ring]
    ys = [y for ring in rings for _, y in ring]
    return [min(xs), min(ys), max(xs), max(ys)]
