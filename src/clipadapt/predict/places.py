"""The columns a prediction table carries from its inputs, so that predictions keep their
place: a manifest's id, box, track and coordinates by default, the columns `--keep` names, and
coordinates joined by uuid from a metadata table (`--metadata`, as Global StreetScapes'
metadata CSVs: uuid, lat, lon, ...).

Carried columns sit right after `path`, row for row with the images (the prediction
functions return rows in input order, so the join is by position). Coordinates are
written as `lat` and `lon` (float, NaN when unknown) whatever the input calls them
(lat/latitude, lon/lng/longitude); every other column is kept as the text it was read as.

Free of torch: bad --keep / --metadata input is answered before a model is loaded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.data.boxes import TRACK_COLUMN, box_columns, boxed_items
from clipadapt.data.inputs import collect_with_columns, missing_path
from clipadapt.errors import ClipAdaptError, ClipAdaptWarning
from clipadapt.geoparquet import valid_points
from clipadapt.suggest import did_you_mean

ID_COLUMNS = ("uuid", "id")
COORDINATES = {"lat": ("lat", "latitude"), "lon": ("lon", "lng", "longitude")}
# a carried column whose name the prediction table already uses gets this suffix
RENAMED = ":input"
_EXAMPLES = 3  # rows named in a coordinate warning


@dataclass
class Places:
    """What a prediction table carries: `columns`, one row per image in input order, under
    their output names; `lines`, what to tell the user about them (joins, counts)."""

    columns: pd.DataFrame
    lines: list[str] = field(default_factory=list)

    @property
    def has_points(self) -> bool:
        """Both coordinates are carried: the table can be written as GeoParquet."""
        return {"lat", "lon"} <= set(self.columns.columns)


def collect_inputs(specs) -> tuple[list[Path], pd.DataFrame]:
    """The images of every input (folders, files, globs, manifests), and one table row for
    row with them: the manifests' own columns as text, missing (NA) in the rows of other
    inputs and of manifests that lack the column. A manifest row with a box (x, y, w, h or
    x1, y1, x2, y2) is a `data.boxes.BoxedImage`: its crop of the frame."""
    paths, frames = [], []
    for spec in specs:
        found, frame = collect_with_columns(spec)
        if frame is not None:  # a manifest naming a box per row: each row reads its crop of the frame
            found = boxed_items(found, frame, Path(spec).expanduser(), frame.index)
        paths += found
        frames.append(frame if frame is not None else pd.DataFrame(index=range(len(found))))
    inputs = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    return paths, inputs.astype("string")


def carried_columns(paths: list, inputs: pd.DataFrame, keep: str | None = None,
                    metadata: Path | None = None) -> Places:
    """The columns to carry for `paths` (`inputs`: `collect_inputs`' table). `keep`: None
    (the id column `uuid`/`id`, the box columns and `track`, and the coordinates, when
    there), "all", "none" or
    "COL[,COL...]". `metadata`: a CSV/Parquet with uuid + lat/lon whose coordinates fill
    the rows that have none, matched by the row's uuid (or, for images without one, the
    file name's stem: GSS names its images img/*/<uuid>.jpeg)."""
    available = list(inputs.columns)
    names = chosen_names(available, keep, metadata is not None)
    sources = {name: source_column(available, name) for name in names}
    columns = {}
    for name in names:
        source = sources[name]
        # no source: --metadata supplies it (coordinates, or the uuid it was matched by)
        values = inputs[source] if source else pd.Series(pd.NA, index=inputs.index, dtype="string")
        if name in COORDINATES:
            values = pd.to_numeric(values.str.strip(), errors="coerce").astype("float64")
        columns[name] = values.reset_index(drop=True)
    carried = pd.DataFrame(columns, index=range(len(paths)))
    places = Places(carried)
    if metadata is not None:
        places.lines.append(join_metadata(carried, paths, inputs, Path(metadata)))
    if places.has_points:
        check_coordinates(carried, paths, given_only=metadata is None)
    return places


def chosen_names(available: list[str], keep: str | None, metadata: bool) -> list[str]:
    """The output names of the carried columns, in order (see `carried_columns`)."""
    derived = {"uuid", *COORDINATES} if metadata else set()  # what --metadata can supply
    outputs = [output_name(available, c) for c in available]
    mode = (keep or "").strip().lower()
    if keep is None or mode == "all":
        ids = [c for c in [find_column(available, ID_COLUMNS)] if c] or (["uuid"] if metadata else [])
        # a row's box and track say which object of its frame it is: carried by default too
        located = [*(box_columns(available) or ()), *([TRACK_COLUMN] if TRACK_COLUMN in available else [])]
        names = ids + located if keep is None else list(dict.fromkeys(outputs + ids))
        return names + [c for c in COORDINATES if (c in outputs or c in derived) and c not in names]
    if mode == "none":
        return []
    names = []
    for asked in (part.strip() for part in keep.split(",")):
        if not asked:
            continue
        name = output_name(available, asked) if asked in available else _alias(asked)
        if name not in outputs and name not in derived:
            raise ClipAdaptError(unknown_column(asked, available, metadata))
        if name not in names:
            names.append(name)
    return names


def output_name(available: list[str], column: str) -> str:
    """`lat` / `lon` for the column each coordinate is read from, else the column's name."""
    for name in COORDINATES:
        if source_column(available, name) == column:
            return name
    return column


def source_column(available: list[str], name: str) -> str | None:
    """The input column behind the output column `name` (None: --metadata supplies it)."""
    if name in COORDINATES:
        return find_column(available, COORDINATES[name])
    return name if name in available else None


def find_column(available: list[str], names: tuple[str, ...]) -> str | None:
    """The column of `available` that is the first of `names`, matched case-insensitively
    (as `clipadapt aggregate` finds lat / lon): 'Latitude' and 'UUID' are found too."""
    folded = {}
    for column in available:
        folded.setdefault(str(column).strip().lower(), column)
    return next((folded[n] for n in names if n in folded), None)


def _alias(asked: str) -> str:
    """'latitude' -> 'lat', 'lng' -> 'lon' ...: a coordinate asked for by another of its names."""
    return next((name for name, aliases in COORDINATES.items() if asked.lower() in aliases), asked)


def unknown_column(asked: str, available: list[str], metadata: bool) -> str:
    """The --keep error for a column no input has."""
    if not available:
        where = ("the inputs are folders, files or globs, which name images only (a manifest CSV/Parquet "
                 "carries columns)" + ("; --metadata adds uuid, lat and lon" if metadata else ""))
        return f"--keep {asked}: no such column: {where}."
    known = available + (["uuid", "lat", "lon"] if metadata else [])
    return (f"--keep {asked}: no input has that column.{did_you_mean(asked, known + ['all', 'none'])} "
            f"The manifests' columns: {', '.join(available)}; or give --keep all / --keep none.")


def row_keys(paths: list, inputs: pd.DataFrame) -> pd.Series:
    """The uuid each row is matched by: its uuid/id cell, else (no such cell: a folder of
    GSS images, img/*/<uuid>.jpeg) its image file's stem."""
    id_column = find_column(list(inputs.columns), ID_COLUMNS)
    given = inputs[id_column].str.strip() if id_column else pd.Series(pd.NA, index=inputs.index, dtype="string")
    stems = pd.Series([Path(p).stem for p in paths], dtype="string")
    return given.fillna(stems).reset_index(drop=True)


def join_metadata(carried: pd.DataFrame, paths: list, inputs: pd.DataFrame, metadata: Path) -> str:
    """Fill `carried`'s lat/lon (in place) from `metadata` for the rows without coordinates;
    the line that says how many were found."""
    keys = row_keys(paths, inputs)
    for column in dict.fromkeys([find_column(list(inputs.columns), ID_COLUMNS), "uuid"]):
        if column in carried.columns:  # the uuid each row is matched by, stems included
            carried[column] = carried[column].fillna(keys)
    if not {"lat", "lon"} & set(carried.columns):
        return f"--metadata {metadata} not used: --keep carries neither lat nor lon."
    lacking = pd.Series(False, index=carried.index)
    for name in ("lat", "lon"):
        if name in carried.columns:
            lacking |= carried[name].isna()
    by_key = read_metadata(metadata, set(keys[lacking].dropna())).set_index("uuid")
    found = lacking & keys.isin(by_key.index)
    for name in ("lat", "lon"):
        if name in carried.columns:
            carried.loc[found, name] = keys[found].map(by_key[name]).astype("float64")
    given, joined, missed = int((~lacking).sum()), int(found.sum()), int((lacking & ~found).sum())
    line = f"coordinates of {joined:,} of {len(carried):,} rows joined from {metadata} by uuid"
    if given:
        line += f" ({given:,} had their own)"
    if missed:
        line += f"; {rows(missed)} with a uuid not in it: lat/lon NaN"
    return line


def rows(n: int) -> str:
    """'1 row' / '3 rows'."""
    return f"{n} row" if n == 1 else f"{n:,} rows"


def read_metadata(path: Path, wanted: set[str]) -> pd.DataFrame:
    """Columns uuid, lat, lon of the rows of the metadata table `path` whose uuid is in
    `wanted`; only those three columns are read (GSS's tables hold 10 M rows and dozens of
    columns). A uuid listed twice among them is an error: which row would be meant?"""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not path.is_file():
        raise ClipAdaptError(missing_path(path, " (--metadata)", "Give a CSV/Parquet table with uuid, lat and lon."))
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ClipAdaptError(f"--metadata {path}: use a .csv or .parquet table (uuid, lat, lon).")
    names = _column_names(path, suffix)
    key = find_column(names, ID_COLUMNS)
    if key is None:
        raise ClipAdaptError(f"--metadata {path} has no 'uuid' column to match the images by; its columns are "
                             f"{names}.{did_you_mean('uuid', names)}")
    coords = {name: source_column(names, name) for name in COORDINATES}
    for name, column in coords.items():
        if column is None:
            raise ClipAdaptError(f"--metadata {path} has no {name} column ({' / '.join(COORDINATES[name])}); its "
                                 f"columns are {names}.{did_you_mean(name, names)}")
    table = _read_columns(path, suffix, [key, coords["lat"], coords["lon"]])
    uuids = pc.utf8_trim_whitespace(pc.cast(table.column(key), pa.string()))
    keep = pc.is_in(uuids, value_set=pa.array(sorted(wanted), type=pa.string()))
    frame = pd.DataFrame({"uuid": uuids.filter(keep).to_pandas(),
                          "lat": _numbers(table.column(coords["lat"]).filter(keep)),
                          "lon": _numbers(table.column(coords["lon"]).filter(keep))})
    repeated = frame["uuid"][frame["uuid"].duplicated(keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        raise ClipAdaptError(f"--metadata {path} lists uuid {first} {int((repeated == first).sum())} times "
                             f"({repeated.nunique()} of these images' uuids more than once): which row's "
                             "coordinates are meant is unclear. Keep one row per uuid.")
    return frame


def _column_names(path: Path, suffix: str) -> list[str]:
    """The header of a CSV or the schema of a Parquet file, without reading the rows."""
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    try:
        if suffix == ".csv":
            with pv.open_csv(path) as reader:  # reads the first block only
                return list(reader.schema.names)
        return list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow's ArrowInvalid / OSError, by cause
        raise ClipAdaptError(f"--metadata {path}: cannot read it as {suffix[1:].upper()} ({exc}).") from None


def _read_columns(path: Path, suffix: str, columns: list[str]):
    """The named columns of a metadata table as an Arrow table (CSV cells read as text)."""
    import pyarrow as pa
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    try:
        if suffix == ".csv":
            options = pv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns})
            return pv.read_csv(path, convert_options=options)
        return pq.read_table(path, columns=columns)
    except Exception as exc:
        raise ClipAdaptError(f"--metadata {path}: cannot read columns {columns} ({exc}).") from None


def _numbers(column) -> pd.Series:
    """An Arrow column of coordinates as float64; empty or non-numeric cells NaN."""
    values = column.to_pandas()
    if values.dtype.kind not in "fi":
        values = pd.to_numeric(values.astype("string").str.strip(), errors="coerce")
    return values.astype("float64").reset_index(drop=True)


def check_coordinates(carried: pd.DataFrame, paths: list, given_only: bool) -> None:
    """Warn (ClipAdaptWarning) about rows whose lat/lon are out of range, and, when no
    metadata filled them (`given_only`), rows without coordinates. Their values stay as
    given; their geometry is null, and an aggregation leaves them out."""
    lat, lon = carried["lat"].to_numpy(np.float64), carried["lon"].to_numpy(np.float64)
    missing = np.isnan(lat) | np.isnan(lon)
    wrong = ~missing & ~valid_points(lon, lat)
    if wrong.any():
        first = np.flatnonzero(wrong)[:_EXAMPLES]
        shown = "; ".join(f"lat {lat[i]:g}, lon {lon[i]:g} for {paths[i]}" for i in first)
        warnings.warn(f"{rows(int(wrong.sum()))} with coordinates out of range ({shown}{' ...' if wrong.sum() > len(first) else ''}"
                      "; lat must be in [-90, 90], lon in [-180, 180]): kept as given, with no geometry.",
                      ClipAdaptWarning, stacklevel=3)
    if given_only and missing.any():
        first = np.flatnonzero(missing)[:_EXAMPLES]
        shown = ", ".join(str(paths[i]) for i in first)
        warnings.warn(f"{rows(int(missing.sum()))} without coordinates (lat/lon empty or not a number: {shown}"
                      f"{' ...' if missing.sum() > len(first) else ''}): lat/lon NaN, with no geometry.",
                      ClipAdaptWarning, stacklevel=3)


def attach(table: pd.DataFrame, carried: pd.DataFrame | None) -> pd.DataFrame:
    """`table` (path, ok, error, predictions) with `carried` right after `path`, row for
    row. A carried name the table already has (an attribute's column, `ok` ...) or that
    GeoParquet takes (`geometry`) gets RENAMED's suffix."""
    if carried is None or carried.shape[1] == 0:
        return table
    if len(carried) != len(table):
        raise ClipAdaptError(f"internal: {len(carried)} carried rows for {len(table)} predictions.")
    taken = set(table.columns) | {"geometry"}
    carried = carried.rename(columns={c: f"{c}{RENAMED}" for c in carried.columns if c in taken})
    carried = carried.set_axis(table.index)
    return pd.concat([table[["path"]], carried, table.drop(columns=["path"])], axis=1)
