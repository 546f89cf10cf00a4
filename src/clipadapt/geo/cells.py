"""H3 cells: the optional `h3` package behind one import with the fix in its error, a
cell per coordinate, and a cell's boundary polygon."""

from __future__ import annotations

import numpy as np

from clipadapt.errors import ClipAdaptError

MAX_RESOLUTION = 15


def h3_module():
    """The h3 package (integer API: cells as 64-bit ints, cheaper than strings per row)."""
    try:
        import h3.api.basic_int as h3int
    except ImportError:
        raise ClipAdaptError("Grouping by H3 cells needs the h3 package: pip install 'clipadapt[geo]'.") from None
    return h3int


def check_resolution(text: str) -> int:
    """The resolution of 'h3:RES' (0..15), or a ClipAdaptError saying what to pass."""
    try:
        res = int(text)
    except ValueError:
        res = -1
    if not 0 <= res <= MAX_RESOLUTION:
        raise ClipAdaptError(f"--by h3:{text}: the H3 resolution must be a whole number from 0 (continents) to "
                             f"{MAX_RESOLUTION} (about 1 m); e.g. h3:8 for cells of about 0.7 km^2.")
    return res


def cells_of(lat: np.ndarray, lon: np.ndarray, res: int) -> np.ndarray:
    """The H3 cell (uint64) of each (lat, lon) pair in degrees; the pairs must be valid."""
    to_cell = h3_module().latlng_to_cell
    # one C call per row: map() over float lists is the fastest h3-py offers (about 1 us a row)
    return np.fromiter(map(to_cell, lat.tolist(), lon.tolist(), [res] * len(lat)), dtype=np.uint64, count=len(lat))


def cell_name(cell: int) -> str:
    """The usual hexadecimal name of a cell ('881f1d4887fffff')."""
    return f"{int(cell):x}"


def cell_ring(name: str) -> list[tuple[float, float]]:
    """The boundary of a cell as a closed ring of (lon, lat) in degrees, counterclockwise
    (GeoJSON's and GeoParquet's orientation). A cell across the antimeridian keeps
    continuous longitudes (some beyond +-180) so that it stays one polygon."""
    import h3

    ring = [(lng, lat) for lat, lng in h3.cell_to_boundary(name)]
    lons = [p[0] for p in ring]
    if max(lons) - min(lons) > 180:
        ring = [(lng + 360 if lng < 0 else lng, lat) for lng, lat in ring]
    if _signed_area(ring) < 0:
        ring.reverse()
    return ring + ring[:1]


def _signed_area(ring: list[tuple[float, float]]) -> float:
    """Twice the signed (shoelace) area: positive for a counterclockwise ring."""
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]))
