"""Manifest reader: CSV or Parquet with an image-path column and label columns."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.config import DataConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.attribute_sets import read_attribute_file
from clipadapt.data.boxes import TRACK_COLUMN, box_columns
from clipadapt.data.images import with_skip_fix
from clipadapt.data.paths import resolve_image_path
from clipadapt.data.tables import (drop_repeated_images, encode, encode_binary, label_map, normalised, read_table,
                                  require_columns, where)
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DataFormat
from clipadapt.suggest import did_you_mean
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec

LOG = logging.getLogger("clipadapt")


def _table(path: Path, cfg: DataConfig, columns: list[str]) -> "ManifestRows":
    """The rows of one manifest with resolved image paths and their 'file line N' sources;
    repeated images are dropped (same labels) or refused (different labels)."""
    table = read_table(path, cfg.encoding)
    require_columns(table, [cfg.path_column, *columns], path)
    if box_columns(table.columns, str(path)) is not None:  # training on whole frames would be silently wrong
        raise ClipAdaptError(f"{path} names a box per row ({', '.join(box_columns(table.columns))}): training and "
                             "evaluation read whole images, so cut the crops to files first (the manifest then names "
                             "the crops); `clipadapt predict` reads boxes from frames (docs/data.md).")
    base = Path(cfg.root).expanduser() if cfg.root else path.parent
    paths, sources = [], []
    for row, value in enumerate(table[cfg.path_column]):
        value = value.strip()
        if not value:
            raise ClipAdaptError(f"{where(path, row)}: empty '{cfg.path_column}'. Fill it or remove the row.")
        image = resolve_image_path(value, base, where(path, row), cfg.allow_outside_root)
        # Under on_bad_image=skip a missing file is left out (and listed) with the other bad images.
        if cfg.on_bad_image == "fail" and not image.is_file():
            raise ClipAdaptError(with_skip_fix(f"Image not found: {image} ({where(path, row)}). "
                                                 "Fix the path or remove the row."))
        paths.append(image)
        sources.append(where(path, row))
    keep = drop_repeated_images(paths, table[columns].apply(normalised), path)
    if len(keep) < len(table):
        table = table.iloc[keep].reset_index(drop=True)
        paths, sources = [paths[i] for i in keep], [sources[i] for i in keep]
    return ManifestRows(path, table, paths, sources, keep)


@dataclass
class ManifestRows:
    """Rows of one manifest (or of one split of it): `rows` are their data rows in the file."""

    path: Path
    table: pd.DataFrame
    paths: list[Path]
    sources: list[str]
    rows: np.ndarray

    def take(self, index: np.ndarray) -> "ManifestRows":
        return ManifestRows(self.path, self.table.iloc[index].reset_index(drop=True), [self.paths[i] for i in index],
                            [self.sources[i] for i in index], self.rows[index])


SPLITS = ("train", "val", "test")


def _by_split(rows: ManifestRows, column: str) -> dict[str, ManifestRows]:
    """The rows of a one-file manifest grouped by its split column (train / val / test)."""
    values = normalised(rows.table[column])
    for i, value in enumerate(values):
        if value not in SPLITS:
            raise ClipAdaptError(f"{where(rows.path, rows.rows[i])}: {column} is '{rows.table[column].iloc[i]}'; "
                                 f"the allowed values are {', '.join(SPLITS)}. Fix the cell (data.split_column).")
    return {split: rows.take(np.flatnonzero(values.to_numpy() == split)) for split in SPLITS}


def _report_empty_labels(rows: ManifestRows, names: list[str], split: str | None) -> None:
    """One warning listing, per attribute, the rows whose label cell is empty: they are
    left out of that attribute's loss and metrics, which should not happen unnoticed."""
    found = []
    for name in names:
        empty = np.flatnonzero(normalised(rows.table[name]).to_numpy() == "")
        if len(empty):
            found.append(f"'{name}' {len(empty)} of {len(rows.paths)} rows (first: {where(rows.path, rows.rows[empty[0]])})")
    if found:
        scope = f"{rows.path} (split {split})" if split else str(rows.path)
        LOG.warning("%s: empty label cells: %s. Each such row is left out of that attribute's loss and metrics.",
                    scope, "; ".join(found))


def read_manifest(cfg: DataConfig):
    """Train (and optional val/test) sets from manifests, or from one manifest with a
    split column (data.split_column); the label map comes from train."""
    if cfg.train_manifest is None:
        raise ClipAdaptError("data.train_manifest is required for format 'manifest' (a CSV or Parquet file).")
    multilabel = cfg.task == "multilabel"
    if multilabel:
        declared = _multilabel_attributes(cfg)
        names = [a.name for a in declared]
    else:
        if not cfg.attributes:
            raise ClipAdaptError("data.attributes must list the label column(s) of the manifest, e.g. [weather].")
        names = list(cfg.attributes)
    train_path = Path(cfg.train_manifest).expanduser()
    if cfg.split_column:
        # the split column joins the labels in the repeat check: one image in two splits is refused
        splits = _by_split(_table(train_path, cfg, [*names, cfg.split_column]), cfg.split_column)
        if not len(splits["train"].paths):
            raise ClipAdaptError(f"{train_path} has no row with {cfg.split_column} 'train'; at least one is needed.")
    else:
        splits = {"train": _table(train_path, cfg, names)}
        for split, extra in (("val", cfg.val_manifest), ("test", cfg.test_manifest)):
            if extra is not None:
                splits[split] = _table(Path(extra).expanduser(), cfg, names)
    train_table = splits["train"].table
    group_column = cfg.val_group_column
    if group_column is not None and group_column not in train_table.columns:
        columns = list(train_table.columns)
        raise ClipAdaptError(f"data.val_group_column '{group_column}' is not a column of {train_path}; its columns "
                             f"are {columns}.{did_you_mean(group_column, columns)} Name one of them, or remove "
                             "data.val_group_column.")
    if multilabel:
        task = TaskSpec(tuple(declared), multilabel=True)
    else:
        attrs = []
        for name in names:
            classes = label_map(normalised(train_table[name]))
            if not classes:
                raise ClipAdaptError(f"{train_path}: column '{name}' has no labels.")
            attrs.append(Attribute(name, classes, cfg.templates.get(name, "a photo of a {}."),
                                   {k.lower(): v for k, v in cfg.class_words.get(name, {}).items()}))
        task = TaskSpec(tuple(attrs))

    def build(split: str) -> LabelledImages | None:
        part = splits.get(split)
        if part is None or (cfg.split_column and split != "train" and not len(part.paths)):
            return None
        _report_empty_labels(part, names, split if cfg.split_column else None)
        if multilabel:
            columns = [encode_binary(part.table[a.name], part.path, a.name, part.rows) for a in task.attributes]
        else:
            columns = [encode(normalised(part.table[a.name]), a.classes, part.path, a.name, part.rows)
                       for a in task.attributes]
        tracks = list(part.table[TRACK_COLUMN].str.strip()) if TRACK_COLUMN in part.table.columns else None
        # the rows a validation split drawn from train keeps together (data/splits.py group_split)
        groups = (list(part.table[group_column].str.strip())
                  if group_column is not None and group_column in part.table.columns else None)
        return LabelledImages(part.paths, np.stack(columns, axis=1), task, part.sources, tracks, groups)

    return build("train"), build("val"), build("test")


def _multilabel_attributes(cfg: DataConfig) -> list[Attribute]:
    """The binary attributes of a multi-label manifest: from data.attribute_file (all of
    them, or those data.attributes names), else data.attributes with built-in or
    data.templates sentences."""
    from clipadapt.data.par.sentences import sentence_for

    if cfg.attribute_file is not None:
        declared = {a.name: a for a in read_attribute_file(cfg.attribute_file)}
        wanted = cfg.attributes or list(declared)
        unknown = [n for n in wanted if n not in declared]
        if unknown:
            raise ClipAdaptError(f"data.attributes {unknown} are not in {cfg.attribute_file} "
                                 f"(it has {list(declared)}).")
        chosen = [declared[n] for n in wanted]
    elif cfg.attributes:
        chosen = [Attribute(n, BINARY_CLASSES, template=sentence_for(None, n)) for n in cfg.attributes]
    else:
        raise ClipAdaptError("A multi-label manifest needs data.attribute_file (names + sentences) or "
                             "data.attributes (the 0/1 label columns).")
    return [Attribute(a.name, a.classes, cfg.templates.get(a.name, a.template), a.class_words) for a in chosen]


def check_manifest_settings(cfg: DataConfig) -> None:
    """The manifest settings that contradict each other, whatever the tables hold."""
    if cfg.split_column and (cfg.val_manifest or cfg.test_manifest):
        raise ClipAdaptError(f"data.split_column '{cfg.split_column}' puts every split in data.train_manifest; "
                             "remove data.val_manifest / data.test_manifest, or data.split_column.")
    if cfg.val_group_column and cfg.val_manifest:
        raise ClipAdaptError(f"data.val_group_column '{cfg.val_group_column}' draws the validation split from train "
                             "by group, but data.val_manifest gives one; remove one of them.")


MANIFEST_FORMAT = DataFormat(read=read_manifest, check=check_manifest_settings,
                             reads=("train_manifest", "test_manifest", "val_manifest", "split_column",
                                    "attribute_file", "val_group_column"),
                             summary="CSV or Parquet tables of image paths and labels, multi-class or multi-label")
