"""Label tables (CSV / Parquet) -> label maps and encoded label columns, with errors that
name the file, the line and the value.

CSV files are read as UTF-8 (a byte-order mark is fine, so are UTF-16 files that start
with one); any other encoding is an error naming the first byte that is not UTF-8,
unless `data.encoding` names it. Guessing latin-1 would "work" on every file and turn
a Windows-1252 or Shift-JIS table into labels and paths that silently match nothing.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.errors import ClipAdaptError
from clipadapt.suggest import did_you_mean
from clipadapt.task import MISSING, normalise_class_name

LOG = logging.getLogger("clipadapt")
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_table(path: Path, encoding: str = "auto") -> pd.DataFrame:
    """A CSV or Parquet file as strings (labels stay text: '1' and 'true' are class names).

    Raises ClipAdaptError for a missing, empty or undecodable file, a table without data
    rows, or a header that names a column twice.
    """
    path = Path(path)
    if not path.is_file():
        raise ClipAdaptError(f"Label file not found: {path}. Check data.root / the manifest path.")
    if path.stat().st_size == 0:
        raise ClipAdaptError(f"{path} is empty (0 bytes). It must be a CSV or Parquet table with a header line.")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path).astype("string").fillna("")
            table.columns = [str(c) for c in table.columns]
        else:
            text = decode_text(path.read_bytes(), path, encoding)
            _refuse_repeated_columns(text, path)
            table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except ClipAdaptError:
        raise
    except pd.errors.EmptyDataError:
        raise ClipAdaptError(f"{path} holds no table (only blank lines). It needs a header line and rows.") from None
    except Exception as exc:
        detail = " ".join(str(exc).split())  # pandas ends some messages with a newline
        raise ClipAdaptError(f"Cannot read {path}: {detail}. It must be a CSV or Parquet table with a header.") from None
    if len(table) == 0:
        raise ClipAdaptError(f"{path} has a header ({list(table.columns)}) but no data rows. Add rows or remove the file.")
    return table


def decode_text(raw: bytes, path: Path, encoding: str = "auto") -> str:
    """The text of a table file: UTF-8 (BOM stripped) or BOM-marked UTF-16 when `encoding`
    is "auto", else the named encoding; undecodable bytes are an error naming line and byte."""
    if encoding != "auto":
        try:
            return raw.decode(encoding).lstrip("\ufeff")
        except LookupError:
            raise ClipAdaptError(f"data.encoding '{encoding}' is not an encoding Python knows (e.g. utf-8, latin-1, cp1252).") from None
        except UnicodeDecodeError as exc:
            raise _not_encoded(raw, exc, path, encoding) from None
    if raw.startswith(_UTF16_BOMS):
        try:
            return raw.decode("utf-16").lstrip("\ufeff")
        except UnicodeDecodeError as exc:
            raise _not_encoded(raw, exc, path, "UTF-16") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_encoded(raw, exc, path, "UTF-8") from None


def _not_encoded(raw: bytes, exc: UnicodeDecodeError, path: Path, encoding: str) -> ClipAdaptError:
    line = raw[:exc.start].count(b"\n") + 1
    return ClipAdaptError(
        f"{path} is not {encoding} text: byte 0x{raw[exc.start]:02x} on line {line} cannot be decoded. Save the "
        "table as UTF-8, or name its encoding with data.encoding (e.g. latin-1 or cp1252)."
    )


def _refuse_repeated_columns(text: str, path: Path) -> None:
    # pandas would silently rename the second 'weather' to 'weather.1' and read the first.
    header = next(csv.reader(io.StringIO(text)), [])
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise ClipAdaptError(f"{path} names the column '{name}' twice in its header. Rename or remove one of them.")
        seen.add(name)


def where(path: Path, row: int) -> str:
    """Human position of data row `row` (0-based): the line in a CSV, the row in Parquet."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return f"{path} row {row}"
    return f"{path} line {row + 2}"  # +1 for the header, +1 for 1-based lines


def require_columns(table: pd.DataFrame, columns: list[str], path: Path) -> None:
    """Every column of `columns` exists in `table`, else one error suggesting the closest."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        hints = "".join(did_you_mean(c, table.columns) for c in missing)
        raise ClipAdaptError(
            f"{path} has no column {', '.join(repr(c) for c in missing)}; its columns are {list(table.columns)}.{hints} "
            "Rename the column or change data.attributes / data.path_column."
        )


def normalised(column: pd.Series) -> pd.Series:
    """Labels stripped and lower-cased (the rule of every reader); non-strings become ''."""
    return column.map(lambda v: normalise_class_name(v) if isinstance(v, str) else "")


def label_map(column: pd.Series) -> tuple[str, ...]:
    """Sorted class names of a (normalised) train column; empty cells are not classes."""
    return tuple(sorted(v for v in set(column) if v))


def encode(column: pd.Series, classes: tuple[str, ...], path: Path, attribute: str, rows=None) -> np.ndarray:
    """Class indices of a normalised column (-1 for empty cells); an unknown label is an error.
    `rows`: each cell's data row in the file (default 0, 1, ...), for the error's line."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.full(len(column), MISSING, dtype=np.int64)
    for row, value in enumerate(column):
        if not value:
            continue
        if value not in index:
            raise ClipAdaptError(
                f"{where(path, row if rows is None else rows[row])}: label '{value}' of '{attribute}' does not occur in the train split "
                f"(known classes: {list(classes)}).{did_you_mean(value, classes)} Fix the label or add training "
                "images of that class."
            )
        out[row] = index[value]
    return out


BINARY_VALUES = {"1": 1, "0": 0, "-1": MISSING, "": MISSING, "yes": 1, "no": 0, "true": 1, "false": 0,
                 "1.0": 1, "0.0": 0, "-1.0": MISSING}


def encode_binary(column: pd.Series, path: Path, attribute: str, rows=None) -> np.ndarray:
    """A multi-label column as 1 / 0 / -1 (empty or -1 = not labelled); anything else is an
    error naming the file, the line (`rows`: as in `encode`) and the value."""
    out = np.full(len(column), MISSING, dtype=np.int64)
    for row, value in enumerate(column):
        key = value.strip().lower() if isinstance(value, str) else ""
        if key not in BINARY_VALUES:
            raise ClipAdaptError(
                f"{where(path, row if rows is None else rows[row])}: value '{value}' of multi-label attribute '{attribute}' is not 1, 0, -1 or "
                "empty (yes/no and true/false are accepted too). Fix the cell."
            )
        out[row] = BINARY_VALUES[key]
    return out


def drop_repeated_images(images: list, labels: pd.DataFrame, path: Path) -> np.ndarray:
    """Rows to keep when a table lists an image more than once.

    The same image with the same labels is a harmless copy (a concatenated export, say):
    later copies are dropped with one warning, since each would count twice in training
    and metrics. The same image with different labels is a contradiction only the user
    can resolve: an error naming both lines.
    """
    first: dict[str, int] = {}
    keep, dropped = [], []
    values = labels.to_numpy()
    for row, image in enumerate(map(str, images)):
        if image not in first:
            first[image] = row
            keep.append(row)
            continue
        earlier = first[image]
        if list(values[row]) != list(values[earlier]):
            raise ClipAdaptError(
                f"{where(path, earlier)} and {where(path, row)} list the same image {image} with different labels "
                f"({dict(zip(labels.columns, values[earlier]))} vs {dict(zip(labels.columns, values[row]))}). "
                "Keep one of the two rows."
            )
        dropped.append(row)
    if dropped:
        LOG.warning("%s lists %d image(s) twice with the same labels; the repeats are ignored (first: %s).",
                    path, len(dropped), where(path, dropped[0]))
    return np.asarray(keep, dtype=np.int64)

