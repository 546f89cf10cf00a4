"""Which rows have usable coordinates, counted by why not, and the swapped-columns check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipadapt.errors import ClipAdaptError


@dataclass
class CoordinateTally:
    """Running counts over the rows seen so far."""

    missing: int = 0        # NaN / empty lat or lon
    out_of_range: int = 0   # |lat| > 90 or |lon| > 180
    lat_out: int = 0        # rows with a number for both, |lat| > 90 ...
    lat_out_lon_fits: int = 0  # ... and |lon| <= 90: would be a valid latitude
    numbers: int = 0        # rows with a number for both

    def check_swapped(self, lat_name: str, lon_name: str) -> None:
        """Raise when most latitudes are impossible while those rows' longitudes would
        be valid latitudes: the two columns were swapped, and leaving most rows out
        silently would hide that."""
        if self.numbers and self.lat_out > self.numbers / 2 and self.lat_out_lon_fits >= 0.9 * self.lat_out:
            raise ClipAdaptError(f"lat and lon look swapped: {self.lat_out:,} of {self.numbers:,} rows have "
                                 f"|{lat_name}| > 90 while their {lon_name} is within [-90, 90]. Swap the two "
                                 "columns (latitude is north-south, -90..90; longitude east-west, -180..180).")


def valid_coordinates(lat: np.ndarray, lon: np.ndarray, tally: CoordinateTally) -> np.ndarray:
    """A mask of rows with finite, in-range coordinates; the others are counted in `tally`."""
    finite = np.isfinite(lat) & np.isfinite(lon)
    lat_out = finite & (np.abs(lat) > 90)
    in_range = finite & ~lat_out & (np.abs(lon) <= 180)
    tally.missing += int((~finite).sum())
    tally.out_of_range += int((finite & ~in_range).sum())
    tally.numbers += int(finite.sum())
    tally.lat_out += int(lat_out.sum())
    tally.lat_out_lon_fits += int((lat_out & (np.abs(lon) <= 90)).sum())
    return in_range
