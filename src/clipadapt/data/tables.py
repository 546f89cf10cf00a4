"""Label tables (CSV / Parquet) -> label maps and encoded label columns, with errors that
name the file, the line and the value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.errors import ClipAdaptError
from clipadapt.task import MISSING, normalise_class_name


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as strings (labels stay text: '1' and 'true' are class names)."""
    path = Path(path)
    if not path.is_file():
        raise ClipAdaptError(f"Label file not found: {path}. Check data.root / the manifest path.")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path).astype("string").fillna("")
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ClipAdaptError(f"Cannot read {path}: {exc}. It must be a CSV or Parquet table with a header.") from None


def where(path: Path, row: int) -> str:
    """Human position of data row `row` (0-based): the line in a CSV, the row in Parquet."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return f"{path} row {row}"
    return f"{path} line {row + 2}"  # +1 for the header, +1 for 1-based lines


def require_columns(table: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ClipAdaptError(
            f"{path} has no column {', '.join(repr(c) for c in missing)}; its columns are {list(table.columns)}. "
            "Rename the column or change data.attributes / data.path_column."
        )


def normalised(column: pd.Series) -> pd.Series:
    return column.map(lambda v: normalise_class_name(v) if isinstance(v, str) else "")


def label_map(column: pd.Series) -> tuple[str, ...]:
    """Sorted class names of a (normalised) train column; empty cells are not classes."""
    return tuple(sorted(v for v in set(column) if v))


def encode(column: pd.Series, classes: tuple[str, ...], path: Path, attribute: str) -> np.ndarray:
    """Class indices of a normalised column (-1 for empty cells); an unknown label is an error."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.full(len(column), MISSING, dtype=np.int64)
    for row, value in enumerate(column):
        if not value:
            continue
        if value not in index:
            raise ClipAdaptError(
                f"{where(path, row)}: label '{value}' of '{attribute}' does not occur in the train split "
                f"(known classes: {list(classes)}). Fix the label or add training images of that class."
            )
        out[row] = index[value]
    return out


BINARY_VALUES = {"1": 1, "0": 0, "-1": MISSING, "": MISSING, "yes": 1, "no": 0, "true": 1, "false": 0,
                 "1.0": 1, "0.0": 0, "-1.0": MISSING}


def encode_binary(column: pd.Series, path: Path, attribute: str) -> np.ndarray:
    """A multi-label column as 1 / 0 / -1 (empty or -1 = not labelled); anything else is an
    error naming the file, the line and the value."""
    out = np.full(len(column), MISSING, dtype=np.int64)
    for row, value in enumerate(column):
        key = value.strip().lower() if isinstance(value, str) else ""
        if key not in BINARY_VALUES:
            raise ClipAdaptError(
                f"{where(path, row)}: value '{value}' of multi-label attribute '{attribute}' is not 1, 0, -1 or "
                "empty (yes/no and true/false are accepted too). Fix the cell."
            )
        out[row] = BINARY_VALUES[key]
    return out
