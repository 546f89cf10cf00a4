"""Prediction tables on disk: CSV / Parquet, and the list of images that were skipped.

Free of torch: `clipadapt predict --checkpoint` and the ONNX runtime write through it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clipadapt.data.bad_images import SKIPPED_FILE, SkippedImage, check_image, write_skipped
from clipadapt.io import atomic_write
from clipadapt.errors import ClipAdaptError


def skipped_rows(table: pd.DataFrame) -> list[SkippedImage]:
    """The rows of a prediction table whose image could not be used, as a skip list."""
    bad = table[~table["ok"].astype(bool)]
    # the short reason (re-read: only bad rows, so cheap), the full message when it cannot be had
    return [SkippedImage(p, check_image(p) or e) for p, e in zip(bad["path"], bad["error"])]


def skipped_list_path(out: Path) -> Path:
    """Where `predict --out OUT` lists skipped images: OUT's folder, OUT's stem + '.skipped_images.csv'."""
    out = Path(out)
    return out.with_name(f"{out.stem}.{SKIPPED_FILE}")


def write_table(table: pd.DataFrame, out: Path, points: bool = False) -> Path:
    """Write CSV or Parquet by suffix, atomically. `points`: the table has `lat` / `lon`
    columns, so Parquet is written as GeoParquet (a WKB `geometry` column and the `geo`
    metadata, clipadapt/geoparquet.py); CSV stays plain."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        atomic_write(out, lambda p: table.to_csv(p, index=False))
    elif suffix in (".parquet", ".pq") and points:
        from clipadapt.geoparquet import write_geoparquet

        write_geoparquet(table, out)
    elif suffix in (".parquet", ".pq"):
        atomic_write(out, lambda p: table.to_parquet(p, index=False))
    else:
        raise ClipAdaptError(f"--out {out}: use a .csv or .parquet file name.")
    return out


def write_predictions(table: pd.DataFrame, out: Path, points: bool = False) -> tuple[list[SkippedImage], Path]:
    """Write `table` to `out` (`points`: as `write_table`) and, when images were skipped,
    their list next to it (a stale list from an earlier run to the same OUT is removed).
    Returns (skipped, list path)."""
    write_table(table, out, points)
    skipped = skipped_rows(table)
    listed = skipped_list_path(out)
    if skipped:
        write_skipped(listed, skipped)
    else:
        listed.unlink(missing_ok=True)
    return skipped, listed
