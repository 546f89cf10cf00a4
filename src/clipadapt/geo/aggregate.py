"""Stream a predictions table into per-group class shares: the heart of `clipadapt aggregate`.

Rows are read a batch at a time (only the columns needed), rows that cannot be used are
left out and counted, and each attribute's accumulator adds the batch; memory grows
with the number of groups, never with the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipadapt.errors import ClipAdaptError
from clipadapt.geo.accumulators import ShareAccumulator
from clipadapt.geo.arrays import class_indices, decisions, floats, ok_mask
from clipadapt.geo.grouping import ColumnKey, GroupIndex, H3Key, parse_keys
from clipadapt.geo.intervals import z_value
from clipadapt.geo.layout import find_attributes
from clipadapt.geo.sources import DEFAULT_BATCH_ROWS, iter_batches, resolve_predictions
from clipadapt.geo.shares import OUTPUT_COLUMNS, tidy_shares


@dataclass
class Aggregate:
    """The result: the tidy `table` (a pandas DataFrame, one row per group, attribute and
    class), the grouping `keys` (their output column names) and what was left out."""

    table: object
    keys: list[str]
    h3_resolution: int | None
    confidence: float
    small_below: int = 30
    rows_read: int = 0
    rows_used: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    groups: int = 0
    dropped_small: int = 0

    def summary(self) -> str:
        """One line: what was aggregated into what, and every count of rows left out."""
        kinds = "H3 cells" if self.keys == ["h3"] else "groups"
        line = (f"{self.rows_used:,} of {self.rows_read:,} rows into {self.groups:,} {kinds} "
                f"(by {', '.join(self.keys)})")
        out = [f"{n:,} {why}" for why, n in self.left_out.items() if n]
        if out:
            line += "; left out: " + ", ".join(out)
        if self.dropped_small:
            line += f"; {self.dropped_small:,} group-attribute pairs under --min-count dropped"
        return line

    def to_json(self) -> dict:
        """The run's settings and counts (stored in the output's metadata)."""
        return {"keys": self.keys, "h3_resolution": self.h3_resolution, "confidence": self.confidence,
                "small_below": self.small_below,
                "rows_read": self.rows_read, "rows_used": self.rows_used, "left_out": dict(self.left_out),
                "groups": self.groups, "dropped_small": self.dropped_small}


def aggregate(predictions: str | Path, by: list[str], attributes: list[str] | None = None, confidence: float = 0.95,
              min_count: int = 0, small_below: int = 30, batch_rows: int = DEFAULT_BATCH_ROWS) -> Aggregate:
    """Class shares per group of a `clipadapt predict` table.

    Args:
        predictions: a .csv / .parquet file, a folder of Parquet shards or a glob.
        by: 'h3:RES' and / or column names; several = their combination.
        attributes: the attributes to aggregate (default all).
        confidence: the level of both intervals.
        min_count: drop a group's attribute when it has fewer usable images.
        small_below: flag `small` when a group has fewer images.
        batch_rows: rows read at a time (memory, not results, depends on it).

    Raises:
        ClipAdaptError: a bad input, named with its fix (see docs/geo.md).
    """
    z = z_value(confidence)
    if min_count < 0 or small_below < 0 or batch_rows < 1:
        raise ClipAdaptError("--min-count and --small-below must be 0 or more, the batch size 1 or more.")
    files = resolve_predictions(predictions)
    names = list(files.columns)
    attrs = find_attributes(names, attributes, source=files.label)
    keys = parse_keys(by, names, reserved=OUTPUT_COLUMNS + ("geometry",), source=files.label)
    has_ok = "ok" in names
    needed = list(dict.fromkeys([*(["ok"] if has_ok else []), *(c for k in keys for c in k.columns),
                                 *(c for a in attrs for c in (a.decision, *a.probability_columns))]))
    accumulators = [ShareAccumulator(a) for a in attrs]
    index = GroupIndex()
    result = Aggregate(None, [k.name for k in keys], next((k.res for k in keys if isinstance(k, H3Key)), None),
                       confidence, small_below)
    not_ok = 0
    for batch in iter_batches(files, needed, batch_rows, csv_types=_csv_types(keys, attrs)):
        result.rows_read += batch.num_rows
        keep = ok_mask(batch) if has_ok else np.ones(batch.num_rows, dtype=bool)
        not_ok += int((~keep).sum())
        coded = []
        for key in keys:  # a row left out by one key is not counted again by the next
            keep, codes, values = key.codes(batch, keep)
            coded.append((codes, values))
        if not keep.any():
            continue
        rows = np.flatnonzero(keep)
        local, to_global = index.assign([c[rows] for c, _ in coded], [v for _, v in coded])
        result.rows_used += len(rows)
        for acc in accumulators:
            probs, top = _attribute_arrays(batch, acc.attribute, rows)
            acc.add(local, to_global, probs, top)
    result.left_out = _left_out(not_ok, keys, accumulators)
    result.groups = len(index)
    if not result.rows_used:
        raise ClipAdaptError(f"{files.label}: no usable rows ({result.summary()}). Check the coordinates, the ok "
                             "column and the grouping columns.")
    result.table, result.dropped_small = tidy_shares(index, keys, accumulators, z, min_count, small_below)
    return result


def _attribute_arrays(batch, attribute, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The used rows' ([rows, classes] probabilities, index of the counted class or -1)."""
    probs = np.stack([floats(batch, c, "probabilities") for c in attribute.probability_columns], axis=1)[rows]
    if attribute.multilabel:
        return probs, np.where(decisions(batch, attribute.decision)[rows] == 1, 0, -1)
    top = class_indices(batch, attribute.decision, attribute.classes)[rows]
    unknown = (top < 0) & np.isfinite(probs).all(axis=1)
    if unknown.any():
        value = batch.column(attribute.decision).take([int(rows[np.argmax(unknown)])]).to_pylist()[0]
        raise ClipAdaptError(
            f"column '{attribute.name}' holds {value!r} in a usable row, which is not one of its classes "
            f"({', '.join(attribute.classes[:8])}{', ...' if len(attribute.classes) > 8 else ''}, from its "
            f"'{attribute.name}:p(<class>)' columns). A multi-label run's 0/1 decision? Pass the table as "
            "`clipadapt predict` wrote it.")
    return probs, top


def _csv_types(keys, attrs) -> dict:
    """Fixed CSV column types: pyarrow guesses from the first block, which a later block can contradict."""
    import pyarrow as pa

    types = {}
    for key in keys:
        for column in key.columns:
            types[column] = pa.float64() if isinstance(key, H3Key) else pa.string()
    for a in attrs:
        if not a.multilabel:  # a 0/1 decision column is left to inference, so that text in it is named below
            types[a.decision] = pa.string()
        types.update({c: pa.float64() for c in a.probability_columns})
    return types


def _left_out(not_ok: int, keys, accumulators) -> dict[str, int]:
    counts = {"rows with ok=false": not_ok}
    for key in keys:
        if isinstance(key, H3Key):
            counts["rows without coordinates (NaN / empty)"] = key.tally.missing
            counts["rows with coordinates out of range (|lat| > 90 or |lon| > 180)"] = key.tally.out_of_range
        elif isinstance(key, ColumnKey):
            counts[f"rows with no {key.name}"] = key.missing
    for acc in accumulators:
        counts[f"rows without {acc.attribute.name} probabilities (that attribute only)"] = acc.missing
    return counts
