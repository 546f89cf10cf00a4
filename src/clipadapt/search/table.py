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
from clipadapt.geo.sources import PredictionFiles, resolve_predictions
from clipadapt.search.query import Attribute


@dataclass(frozen=True)
class TableHeader:
    """What a prediction table holds, from its header alone: its files, columns and
    attributes."""

    files: PredictionFiles
    layout: dict[str, AttributeColumns]

    @property
    def attributes(self) -> list[Attribute]:
        return [Attribute(name, () if cols.multilabel else cols.classes) for name, cols in self.layout.items()]


@dataclass(frozen=True)
class PredictionTable(TableHeader):
    """The rows of one or more prediction files (only the columns asked for), with the
    folder of each row's file (relative image paths are looked up there too)."""

    frame: pd.DataFrame = None
    folders: np.ndarray = None  # per row: the folder of the file it came from

    @property
    def label(self) -> str:
        return self.files.label

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


def read_header(spec: str | Path) -> TableHeader:
    """The files and attributes of a prediction table (CSV or Parquet file, a folder of
    Parquet shards or a glob), reading no rows. ClipAdaptError for a missing file, one
    that cannot be read, a table without a `path` column or without probability columns."""
    files = resolve_predictions(spec)
    layout = {a.name: a for a in find_attributes(list(files.columns), source=files.label)}
    if "path" not in files.columns:
        raise ClipAdaptError(f"{files.label} has no 'path' column: pass a table written by `clipadapt predict` or an "
                             "evaluation's predictions.csv, which name each row's image.")
    return TableHeader(files, layout)


def read_prediction_table(spec: str | Path | TableHeader, attributes: list[str] | None = None) -> PredictionTable:
    """The rows of a prediction table: `path`, `ok` and the probability columns of
    `attributes` (default all), so a table of millions of rows costs only what a query
    needs."""
    header = spec if isinstance(spec, TableHeader) else read_header(spec)
    files, layout = header.files, header.layout
    columns = ["path", *(["ok"] if "ok" in files.columns else []),
               *(c for name in (layout if attributes is None else attributes) for c in layout[name].probability_columns)]
    frames, folders = [], []
    for path in files.files:
        frame = _read(path, columns)
        frames.append(frame)
        folders += [path.parent] * len(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return PredictionTable(files, layout, frame, np.asarray(folders, dtype=object))


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".csv":
            # text first: paths stay paths; probabilities are converted where they are used
            return pd.read_csv(path, dtype=str, keep_default_na=False, usecols=columns)[columns]
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ClipAdaptError(f"{path} cannot be read as a prediction table ({exc}). Pass a table written by "
                             "`clipadapt predict`; every shard must hold the same columns.") from None
