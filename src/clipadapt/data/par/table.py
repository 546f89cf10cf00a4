"""What every PAR reader hands over (`ParTable`), and its one way to LabelledImages.

A reader only parses its file into a ParTable: every row's image name, the raw label
matrix with all of the file's attribute columns, the default columns, and the
partition as 0-based row indices. `to_splits` does the rest in one place, the same for
every format: choose the columns (data.attributes or the default), translate raw label
values, validate them, build the task, resolve and check image paths, and cut splits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipadapt.config import DataConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.par.sentences import sentence_for
from clipadapt.data.paths import check_inside
from clipadapt.errors import ClipAdaptError
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec

SPLITS = ("train", "val", "test")


@dataclass
class ParTable:
    """One PAR annotation source, parsed but not yet interpreted.

    Attributes:
        dataset: display name for messages ("PETA", "RAPv2", ...).
        source: the annotation file (or folder) the table came from.
        image_names: per row, the image path relative to `image_root`.
        labels: [N, C] raw label values, all of the file's attribute columns.
        names: the C column names.
        default_columns: columns used when data.attributes is empty, in task order;
            None when the file lacks the standard set (then `default_problem` says why,
            and data.attributes must name the columns).
        value_map: raw value -> label value (1, 0 or -1); any other raw value is an error.
        splits: "train" / "val" / "test" -> 0-based row indices (None: the file has none).
        image_root: folder the image names are relative to.
        sentences: dataset key for `sentence_for` (e.g. "peta").
        row_sources: optional per-row origin ("test_gt_label.txt line 3") for messages.
        extra_sentences: column name -> sentence supplied by the file itself (PromptPAR's
            pickles carry theirs); they win over the built-in ones.
    """

    dataset: str
    source: Path
    image_names: list[str]
    labels: np.ndarray
    names: list[str]
    default_columns: list[int] | None
    value_map: dict[int, int]
    splits: dict[str, np.ndarray | None]
    image_root: Path
    sentences: str | None = None
    row_sources: list[str] | None = None
    extra_sentences: dict[str, str] = field(default_factory=dict)
    default_problem: str = ""

    def where(self, row: int) -> str:
        if self.row_sources is not None:
            return self.row_sources[row]
        return f"{self.source.name} row {row + 1}"


def to_splits(table: ParTable, cfg: DataConfig, check_images: bool = True):
    """(train, val, test) LabelledImages of `table`; val / test are None where absent.

    Raises:
        ClipAdaptError: unknown attribute in data.attributes, a label value outside
            the format's values, a partition index out of range, an empty train split,
            or missing images (with check_images).
    """
    columns = _columns(table, cfg.attributes)
    labels = _translate(table, columns)
    task = TaskSpec(tuple(_attribute(table, c, cfg) for c in columns), multilabel=True)
    n = len(table.image_names)
    rows = {s: _checked_rows(table, s, n) for s in SPLITS}
    if rows["train"] is None or rows["train"].size == 0:
        raise ClipAdaptError(f"{table.dataset}: {table.source} has no training rows in the chosen partition.")
    # Image names come from the annotation file (possibly someone else's pickle): they must
    # stay inside the image folder the config chose.
    paths = [check_inside(table.image_root / name, table.image_root, table.where(i), cfg.allow_outside_root, name)
             for i, name in enumerate(table.image_names)]
    if check_images and cfg.on_bad_image == "fail":  # under skip, missing files are left out and listed
        _check_images(table, paths, rows)
    sources = [table.where(i) for i in range(n)]
    everything = LabelledImages(paths, labels, task, sources)
    return tuple(None if rows[s] is None else everything.subset(rows[s]) for s in SPLITS)


def _columns(table: ParTable, requested: list[str]) -> list[int]:
    if not requested:
        if table.default_columns is None:
            raise ClipAdaptError(table.default_problem)
        return list(table.default_columns)
    if len({a.lower() for a in requested}) != len(requested):
        raise ClipAdaptError(f"data.attributes names an attribute twice: {requested}.")
    lookup = {name.lower(): c for c, name in enumerate(table.names)}
    missing = [a for a in requested if a.lower() not in lookup]
    if missing:
        raise ClipAdaptError(
            f"{table.dataset}: no attribute {missing} in {table.source.name}; its attributes are {table.names}. "
            "Fix data.attributes (or leave it empty for the standard set)."
        )
    return [lookup[a.lower()] for a in requested]


def _translate(table: ParTable, columns: list[int]) -> np.ndarray:
    """Raw values of the chosen columns -> 1 / 0 / -1, refusing anything unexpected."""
    raw = np.asarray(table.labels)[:, columns]
    if raw.dtype.kind not in "biuf":
        raise ClipAdaptError(f"{table.dataset}: the labels in {table.source} are {raw.dtype}, not numbers.")
    known = np.array(sorted(table.value_map), dtype=np.float64)
    bad = ~np.isin(raw.astype(np.float64), known)  # NaN is never in `known`
    if bad.any():
        row, col = np.argwhere(bad)[0]
        count = int(bad[:, col].sum())
        raise ClipAdaptError(
            f"{table.dataset}: label column '{table.names[columns[col]]}' (column {columns[col]}) of "
            f"{table.source} holds the value {raw[row, col]} at {table.where(row)} ({count} such value(s) in that "
            f"column); this format's labels are {sorted(table.value_map)}. Fix the file or leave the attribute out "
            "with data.attributes."
        )
    out = np.empty(raw.shape, dtype=np.int64)
    for value, label in table.value_map.items():
        out[raw == value] = label
    return out


def _attribute(table: ParTable, column: int, cfg: DataConfig) -> Attribute:
    name = table.names[column]
    from_file = table.extra_sentences.get(name, "").replace("{", "(").replace("}", ")")  # braces = format slots
    template = cfg.templates.get(name) or from_file or sentence_for(table.sentences, name)
    return Attribute(name, BINARY_CLASSES, template=template)


def _checked_rows(table: ParTable, split: str, n: int) -> np.ndarray | None:
    rows = table.splits.get(split)
    if rows is None:
        return None
    rows = np.asarray(rows).reshape(-1)
    if rows.size == 0:
        return None if split != "train" else rows.astype(np.int64)
    if rows.dtype.kind == "f" and not np.all(np.mod(rows, 1) == 0):
        raise ClipAdaptError(f"{table.dataset}: the {split} partition of {table.source} holds non-integer indices.")
    rows = rows.astype(np.int64)
    bad = (rows < 0) | (rows >= n)
    if bad.any():
        raise ClipAdaptError(
            f"{table.dataset}: the {split} partition of {table.source} refers to row {int(rows[bad][0])} "
            f"(0-based) but the file has {n} images; is the partition from another version of the dataset?"
        )
    return rows


def _check_images(table: ParTable, paths: list[Path], rows: dict[str, np.ndarray | None]) -> None:
    used = np.unique(np.concatenate([r for r in rows.values() if r is not None]))
    missing = [int(i) for i in used if not os.path.isfile(paths[i])]
    if missing:
        first = missing[0]
        raise ClipAdaptError(
            f"{table.dataset}: {len(missing)} of {used.size} images are missing, e.g. {paths[first]} "
            f"({table.where(first)}). Set data.root to the dataset root, or data.par.image_dir to the image folder "
            f"(now {table.image_root})."
        )
