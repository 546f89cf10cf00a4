"""Where the predictions are: one CSV or Parquet/GeoParquet file, a folder of Parquet
shards (what Ray prediction writes) or a glob, and their record batches, streamed.

Only the columns asked for are read, a batch at a time, so memory stays bounded by the
batch size however many rows the files hold.
"""

from __future__ import annotations

import csv
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from clipadapt.errors import ClipAdaptError

PARQUET_SUFFIXES = (".parquet", ".pq", ".geoparquet")
CSV_SUFFIXES = (".csv",)
DEFAULT_BATCH_ROWS = 65_536  # measured: larger batches are no faster and peak higher (docs/experiments/performance.md)
_CSV_BLOCK_BYTES = 8 << 20  # pyarrow's CSV reader parses a block at a time; batches are sliced from it


@dataclass(frozen=True)
class PredictionFiles:
    """The files behind a PREDICTIONS argument and their column names (the first file's)."""

    label: str
    files: tuple[Path, ...]
    columns: tuple[str, ...]


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "parquet" if suffix in PARQUET_SUFFIXES else "csv" if suffix in CSV_SUFFIXES else None


def _is_data_file(path: Path) -> bool:
    # writers leave _SUCCESS / _metadata and hidden temporary files beside their shards
    return path.is_file() and not path.name.startswith((".", "_")) and _kind(path) is not None


def resolve_predictions(spec: str | Path) -> PredictionFiles:
    """The files of `spec` (a file, a folder of *.parquet searched recursively, or a glob),
    sorted by path, with their column names. ClipAdaptError when there is nothing to read."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if _is_data_file(p) and _kind(p) == "parquet")
        if not files:
            raise ClipAdaptError(f"{path} holds no .parquet files. Pass a folder of Parquet shards, one .csv or "
                                 ".parquet file, or a glob such as 'preds/*.parquet'.")
    elif path.is_file():
        if _kind(path) is None:
            raise ClipAdaptError(f"{path}: not a predictions table by its name; pass a .csv, .parquet or "
                                 ".geoparquet file (or a folder of .parquet shards).")
        files = [path]
    elif any(ch in text for ch in "*?["):
        files = sorted(p for p in map(Path, glob.glob(str(path), recursive=True)) if _is_data_file(p))
        if not files:
            raise ClipAdaptError(f"{text} matches no .csv or .parquet files. Check the pattern (quote it, so the "
                                 "shell does not expand it first).")
    else:
        from clipadapt.data.inputs import missing_path

        raise ClipAdaptError(missing_path(path, "", "Pass a predictions table written by `clipadapt predict` "
                                          "(.csv or .parquet), a folder of Parquet shards or a glob."))
    return PredictionFiles(text, tuple(files), tuple(column_names(files[0])))


def column_names(path: Path) -> list[str]:
    """The column names of one file, read from its header / footer alone."""
    try:
        if _kind(path) == "csv":
            with open(path, newline="", encoding="utf-8") as handle:
                return next(csv.reader(handle), [])
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        kind = "CSV" if _kind(path) == "csv" else "Parquet"
        raise ClipAdaptError(f"{path} cannot be read as a {kind} file ({exc}). Pass a table written by "
                             "`clipadapt predict`.") from None


def iter_batches(files: PredictionFiles, columns: list[str], batch_rows: int = DEFAULT_BATCH_ROWS,
                 csv_types: dict | None = None) -> Iterator:
    """pyarrow RecordBatches of `columns` (at most `batch_rows` rows each) from every file
    in turn. `csv_types` fixes column types for CSV files (pyarrow would otherwise guess
    them from the first block, and a later block could disagree)."""
    for path in files.files:
        have = column_names(path) if path != files.files[0] else list(files.columns)
        missing = [c for c in columns if c not in have]
        if missing:
            raise ClipAdaptError(f"{path} has no column '{missing[0]}' (the other files of {files.label} have it): "
                                 "every shard must hold the same columns.")
        yield from (_csv_batches if _kind(path) == "csv" else _parquet_batches)(path, columns, batch_rows, csv_types)


def _parquet_batches(path: Path, columns: list[str], batch_rows: int, _types) -> Iterator:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise ClipAdaptError(f"{path} cannot be read as Parquet ({exc}).") from None


def _csv_batches(path: Path, columns: list[str], batch_rows: int, types) -> Iterator:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    options = pcsv.ConvertOptions(include_columns=columns, column_types=dict(types or {}),
                                  strings_can_be_null=True)
    block = max(1 << 16, min(_CSV_BLOCK_BYTES, batch_rows * 64 * max(1, len(columns))))
    try:
        reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=block), convert_options=options)
        for batch in reader:
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows)
    except pa.ArrowInvalid as exc:
        raise ClipAdaptError(f"{path}: {exc}. Check that the column holds what `clipadapt predict` writes "
                             "(numbers in probability and coordinate columns).") from None
