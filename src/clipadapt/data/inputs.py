"""The images a prediction job is given: folders, files, glob patterns, manifests.

Free of torch and of the data-format readers, so the ONNX runtime lists inputs the same way.
"""

from __future__ import annotations

import glob
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from clipadapt.data.boxes import box_columns
from clipadapt.data.images import IMAGE_EXTENSIONS
from clipadapt.errors import ClipAdaptError
from clipadapt.suggest import closest

if TYPE_CHECKING:
    import pandas

# names of a folder compared for "did you mean": enough for any hand-made folder, bounded for huge ones
_NEIGHBOURS_READ = 5000


# a manifest's image column, first found wins
PATH_COLUMNS = ("img_path", "path", "image")


def collect_images(spec: str | Path) -> list[Path]:
    """Images named by a folder (recursive), a file, a glob pattern, or a manifest
    (CSV/Parquet with an 'img_path', 'path' or 'image' column, relative to its folder, or
    to the folder above for a GSS split CSV: see `manifest_base`). Whole images only: a
    manifest naming a box per row is refused (`predict`'s `collect_inputs` cuts boxes)."""
    paths, table = collect_with_columns(spec)
    if table is not None and box_columns(table.columns, str(spec)) is not None:
        raise ClipAdaptError(f"{spec} names a box per row; this command reads whole images, so it would read whole "
                             "frames. `clipadapt predict --checkpoint` (or Run.predict) cuts the boxes; for the "
                             "others, save the crops as files first.")
    return paths


def collect_with_columns(spec: str | Path) -> tuple[list[Path], "pandas.DataFrame | None"]:
    """`collect_images`' paths and, for a manifest, its other columns row for row with
    them (text, as read; the rows without an image path are left out of both; the index
    is each row's data-row number in the file). None for a folder, file or glob: such
    inputs name images only."""
    path = Path(spec).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not found:
            raise ClipAdaptError(f"No images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {path}.")
        return found, None
    if path.is_file() and path.suffix.lower() in (".csv", ".parquet", ".pq"):
        from clipadapt.data.tables import read_table  # pandas: only for manifests

        table = read_table(path)
        column = next((c for c in PATH_COLUMNS if c in table.columns), None)
        if column is None:
            raise ClipAdaptError(f"{path} needs an 'img_path', 'path' or 'image' column; it has {list(table.columns)}.")
        # the index keeps each row's data-row number in the file, for messages (boxes name their row)
        table = table[table[column] != ""]
        base = manifest_base(path, table[column])
        paths = [p if p.is_absolute() else base / p for p in (Path(v) for v in table[column])]
        return paths, table.drop(columns=[column])
    if path.is_file():
        return [path], None
    if not glob.has_magic(str(spec)):
        raise ClipAdaptError(missing_path(path))
    matches = sorted(Path(p) for p in glob.glob(str(spec), recursive=True) if Path(p).suffix.lower() in IMAGE_EXTENSIONS)
    if not matches:
        raise ClipAdaptError(f"'{spec}' is not an image, folder, manifest or a glob pattern that matches images.")
    return matches, None


def manifest_base(manifest: Path, cells) -> Path:
    """The folder a manifest's relative image paths start from: its own folder, or the one
    above when the first relative path is found only there. That is Global StreetScapes'
    layout: root/test/<attribute>.csv lists img_path relative to root (img/1/<uuid>.jpeg).
    Decided once per manifest, on its first relative path: no second look per row."""
    here = manifest.parent
    first = next((Path(c) for c in cells if not Path(c).is_absolute()), None)
    if first is not None and not (here / first).exists() and (here.parent / first).exists():
        return here.parent
    return here


def missing_path(path: Path, what: str = "", fix: str = "") -> str:
    """'<path> does not exist<what>.' with the closest name in its folder when there is one,
    then `fix` (what to pass instead)."""
    parent = path.parent
    if not parent.is_dir():
        hint = f" Neither does its folder {parent}."
    else:
        try:
            names = [p.name for p in islice(parent.iterdir(), _NEIGHBOURS_READ)]
        except OSError:  # an unreadable folder: no suggestion, the main message stands
            names = []
        best = closest(path.name, names)
        hint = f" Did you mean {parent / best}?" if best is not None else ""
    return f"{path} does not exist{what}.{hint}" + (f" {fix}" if fix else "")
