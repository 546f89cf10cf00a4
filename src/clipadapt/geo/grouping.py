"""Group keys: `--by h3:RES` (the H3 cell of each row's coordinates) or `--by COLUMN`
(a column's value), and the index that numbers every combination of keys seen.

Per batch, each key gives a code per row and the distinct values those codes stand for;
the codes of several keys are combined, made unique, and only the distinct
combinations (few: bounded by the number of groups) go through the Python dict that
numbers groups across batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clipadapt.errors import ClipAdaptError
from clipadapt.geo.arrays import floats
from clipadapt.geo.cells import cell_name, cells_of, check_resolution, h3_module
from clipadapt.geo.coords import CoordinateTally, valid_coordinates
from clipadapt.geo.layout import find_coordinates
from clipadapt.suggest import did_you_mean

H3_COLUMN = "h3"


@dataclass
class H3Key:
    """The H3 cell at `res` of each row's (lat, lon)."""

    res: int
    lat: str
    lon: str
    tally: CoordinateTally = field(default_factory=CoordinateTally)

    name = H3_COLUMN

    @property
    def columns(self) -> list[str]:
        return [self.lat, self.lon]

    def codes(self, batch, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
        """(valid mask, code per row, the value of each code) for the rows still in `keep`
        (only those are counted when left out); codes of invalid rows are 0."""
        lat = floats(batch, self.lat, "numbers (WGS84 degrees)")
        lon = floats(batch, self.lon, "numbers (WGS84 degrees)")
        valid = keep.copy()
        valid[keep] = valid_coordinates(lat[keep], lon[keep], self.tally)
        self.tally.check_swapped(self.lat, self.lon)
        cells = cells_of(lat[valid], lon[valid], self.res)
        uniq, inverse = np.unique(cells, return_inverse=True)
        codes = np.zeros(len(lat), dtype=np.int64)
        codes[valid] = inverse
        return valid, codes, [cell_name(c) for c in uniq.tolist()]


@dataclass
class ColumnKey:
    """The value of one column, as text (so a CSV and a Parquet copy group alike)."""

    name: str
    missing: int = 0  # rows with no value (null / empty), left out

    @property
    def columns(self) -> list[str]:
        return [self.name]

    def codes(self, batch, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
        """As H3Key.codes: rows without a value in `keep` are left out and counted."""
        import pyarrow as pa

        column = batch.column(self.name)
        encoded = column if pa.types.is_dictionary(column.type) else column.dictionary_encode()
        valid = keep & ~np.asarray(encoded.indices.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        self.missing += int((keep & ~valid).sum())
        codes = np.asarray(encoded.indices.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        values = encoded.dictionary.cast(pa.string()).to_pylist()
        return valid, codes, values


def parse_keys(specs: list[str], columns: list[str], reserved: tuple[str, ...], source: str = "the table") -> list:
    """The keys of the --by options (`h3:RES` or a column name). ClipAdaptError for an
    unknown column (with 'did you mean'), a bad resolution, two H3 keys or a column
    named like an output column."""
    if not specs:
        raise ClipAdaptError("Give at least one --by: h3:RES (e.g. --by h3:8) or a column of the table (e.g. --by city).")
    keys = []
    for spec in specs:
        if spec.lower().startswith("h3:"):
            h3_module()  # the install hint before anything is read
            lat, lon = find_coordinates(columns, source)
            keys.append(H3Key(check_resolution(spec[3:]), lat, lon))
        elif spec in columns:
            if spec in reserved:
                raise ClipAdaptError(f"--by {spec}: the output has its own '{spec}' column; rename that column of "
                                     "the table first.")
            keys.append(ColumnKey(spec))
        else:
            hint = did_you_mean(spec, columns)
            raise ClipAdaptError(f"--by {spec}: {source} has no column '{spec}'.{hint} Group by h3:RES (0..15) or "
                                 "one of its columns.")
    names = [k.name for k in keys]
    if len(set(names)) < len(names):
        raise ClipAdaptError(f"--by: each grouping once (got {', '.join(specs)}); for H3, one resolution per run.")
    return keys


class GroupIndex:
    """Numbers every distinct combination of key values, in the order first seen."""

    def __init__(self) -> None:
        self._ids: dict[tuple, int] = {}
        self.keys: list[tuple] = []

    def __len__(self) -> int:
        return len(self.keys)

    def assign(self, codes: list[np.ndarray], values: list[list]) -> tuple[np.ndarray, np.ndarray]:
        """(local id per row, global id per local id) for rows already filtered to valid
        ones; `codes[j]` index `values[j]`, one pair per key.

        Local ids number the combinations present in this batch (0..L-1), so the
        accumulators can count a batch with bincount over L, then add into the global
        arrays at the L global ids.
        """
        local, columns = _combine(codes)
        to_global = np.empty(len(columns[0]), dtype=np.int64)
        for i, combo in enumerate(zip(*(c.tolist() for c in columns))):
            key = tuple(v[c] for v, c in zip(values, combo))
            gid = self._ids.get(key)
            if gid is None:
                gid = self._ids[key] = len(self.keys)
                self.keys.append(key)
            to_global[i] = gid
        return local.astype(np.int64, copy=False), to_global


def _combine(codes: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(combination id per row, each key's code per combination). Keys are combined one
    at a time and re-numbered densely after each, so the numbers stay below the row count
    however many keys and values there are."""
    uniq, local = np.unique(codes[0], return_inverse=True)
    columns = [uniq]
    for extra in codes[1:]:
        width = int(extra.max()) + 1 if len(extra) else 1
        uniq, local = np.unique(local.astype(np.int64) * width + extra, return_inverse=True)
        columns = [c[uniq // width] for c in columns] + [uniq % width]
    return local, columns
