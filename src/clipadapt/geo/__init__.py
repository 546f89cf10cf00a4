"""From per-image predictions to places: class shares per H3 cell or column value,
with intervals, written as GeoParquet / GeoJSON / CSV and drawn as an offline map.

Free of torch: `clipadapt aggregate` starts in well under a second.
"""

from clipadapt.geo.aggregate import Aggregate, aggregate

__all__ = ["Aggregate", "aggregate"]
