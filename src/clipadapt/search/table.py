"""A prediction table read for searching: its rows, its attributes (from the column
layout of `clipadapt predict` and of an evaluation's predictions.csv, found by
`geo.layout.find_attributes`) and the state probabilities of the attributes a query
names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.errors import ClipAdaptError
from clipadapt.geo.layout import AttributeColumns, find_attributes
from clipadapt.geo.sources import resolve_predictions
from clipadapt.search.query import Attribute


@dataclass(frozen=True)
class PredictionTable:
    """The rows of one or more prediction files, with the folder of each row's file
    (relative image paths are looked up there too) and the table's attributes."""

    label: str
    frame: pd.DataFrame
    folders: np.ndarray  # per row: the folder of the file it came from
    layout: dict[str, AttributeColumns]

    @property
    def attributes(self) -> list[Attribute]:
        return [Attribute(name, () if cols.multilabel else cols.classes) for name, cols in self.layout.items()]

    def usable(self) -> np.ndarray:
        """Rows whose image was read (`ok` true; a table without `ok`, such as an
        evaluation's predictions.csv, has only usable rows)."""
        if "ok" not in self.frame.columns:
            return np.ones(len(self.frame), dtype=bool)
        ok = self.frame["ok"]
        if ok.dtype == bool:
            return ok.to_numpy()
        return ok.astype(str).str.strip().str.lower().isin(("true", "1")).to_numpy()

    def states(self, name: str) -> np.ndarray:
        """[N, S] state probabilities of attribute `name` (multi-label: absent, present);
        NaN where the table has none (an unusable image)."""
        columns = self.layout[name].probability_columns
        values = np.stack([pd.to_numeric(self.frame[c], errors="coerce").to_numpy(dtype=np.float64)
                           for c in columns], axis=1)
        return np.concatenate([1.0 - values, values], axis=1) if self.layout[name].multilabel else values

    def probability_column(self, name: str, value: str | None) -> str:
        """The table's column holding P(term) (for the per-term columns of a result)."""
        cols = self.layout[name]
        return cols.probability_columns[0] if cols.multilabel else cols.probability_columns[cols.classes.index(value)]


def read_prediction_table(spec: str | Path) -> PredictionTable:
    """A prediction table (CSV or Parquet file, a folder of Parquet shards or a glob).
    ClipAdaptError for a missing file, one that cannot be read, a table without a
    `path` column or without probability columns."""
    files = resolve_predictions(spec)
    label = files.label
    layout = {a.name: a for a in find_attributes(list(files.columns), source=label)}
    if "path" not in files.columns:
        raise ClipAdaptError(f"{label} has no 'path' column: pass a table written by `clipadapt predict` or an "
                             "evaluation's predictions.csv, which name each row's image.")
    frames, folders = [], []
    for path in files.files:
        frame = _read(path)
        frames.append(frame)
        folders += [path.parent] * len(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return PredictionTable(label, frame, np.asarray(folders, dtype=object), layout)


def _read(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".csv":
            # text first: class names such as "1" or "true" stay text, paths stay paths
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        return pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ClipAdaptError(f"{path} cannot be read as a prediction table ({exc}). Pass a table written by "
                             "`clipadapt predict`.") from None
