"""Global StreetScapes reader (SPEC 1): root/{train,test}/<attribute>.csv + root/img/*/."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.config import DataConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.data.images import with_skip_fix
from clipadapt.data.paths import resolve_image_path
from clipadapt.data.tables import drop_repeated_images, encode, label_map, normalised, read_table, require_columns, where
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DataFormat
from clipadapt.task import Attribute, TaskSpec


class UuidIndex:
    """uuid -> image path, scanned from root/img/*/ on first use only (most CSVs carry img_path)."""

    def __init__(self, root: Path):
        self.root = root
        self._index: dict[str, Path] | None = None

    def get(self, uuid: str) -> Path | None:
        if self._index is None:
            self._index = image_index(self.root)
        return self._index.get(uuid)


def image_index(root: Path) -> dict[str, Path]:
    """uuid -> path for every root/img/*/<uuid>.jpeg, built once with os.scandir."""
    index: dict[str, Path] = {}
    img = root / "img"
    if not img.is_dir():
        return index
    for folder in os.scandir(img):
        if folder.is_dir():
            for entry in os.scandir(folder.path):
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() in (".jpeg", ".jpg"):
                    index[stem] = Path(entry.path)
    return index


def split_attributes(root: Path, requested: list[str]) -> list[str]:
    """The attributes to read: the requested ones, or every train/<attribute>.csv."""
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise ClipAdaptError(f"{root} is not a Global StreetScapes folder: no train/ folder. Set data.root to the dataset root.")
    available = sorted(p.stem for p in train_dir.glob("*.csv"))
    names = requested or available
    unknown = [a for a in names if a not in available]
    if unknown:
        raise ClipAdaptError(f"No train/{unknown[0]}.csv under {root}; available attributes: {available}.")
    return names


def read_split_table(root: Path, split: str, attribute: str, index: UuidIndex,
                     cfg: DataConfig | None = None) -> tuple[pd.DataFrame, Path]:
    """One attribute CSV of one split, with resolved absolute image paths in '_path' and
    the row position in '_where' (`cfg`: encoding, bad-image policy, root confinement)."""
    cfg = cfg or DataConfig()
    path = root / split / f"{attribute}.csv"
    table = read_table(path, cfg.encoding)
    require_columns(table, [attribute], path)
    if "img_path" not in table.columns and "uuid" not in table.columns:
        raise ClipAdaptError(f"{path} has neither 'img_path' nor 'uuid'; its columns are {list(table.columns)}.")
    resolved, positions = [], []
    for row in range(len(table)):
        rel = table["img_path"].iat[row].strip() if "img_path" in table.columns else ""
        if rel:
            image = resolve_image_path(rel, root, where(path, row), cfg.allow_outside_root)
        else:
            uuid = table["uuid"].iat[row].strip() if "uuid" in table.columns else ""
            image = index.get(uuid)
            if image is None:
                if cfg.on_bad_image == "fail" or not uuid:
                    raise ClipAdaptError(f"{where(path, row)}: no img_path and no image img/*/{uuid}.jpeg under {root}.")
                image = root / "img" / f"{uuid}.jpeg"  # not there: left out and listed as missing
        if cfg.on_bad_image == "fail" and not image.is_file():
            raise ClipAdaptError(with_skip_fix(f"Image not found: {image} ({where(path, row)}). "
                                                 "Fix the path or remove the row."))
        resolved.append(str(image))
        positions.append(where(path, row))
    table = table.assign(_path=resolved, _where=positions, _label=normalised(table[attribute]))
    keep = drop_repeated_images(resolved, table[["_label"]], path)
    if len(keep) < len(table):
        table = table.iloc[keep].reset_index(drop=True)
    return table, path


def read_gss(cfg: DataConfig) -> tuple[LabelledImages, LabelledImages | None, LabelledImages | None]:
    """Train and test sets of the requested attributes (several = multi-attribute mode)."""
    if cfg.root is None:
        raise ClipAdaptError("data.root is required for format 'gss' (the folder holding img/, train/, test/).")
    root = Path(cfg.root).expanduser()
    attributes = split_attributes(root, cfg.attributes)
    index = UuidIndex(root)
    train_tables = {a: read_split_table(root, "train", a, index, cfg) for a in attributes}
    task_attrs = []
    for a in attributes:
        classes = label_map(train_tables[a][0]["_label"])
        task_attrs.append(gss_attribute(a, classes) if a in GSS_SCHEMA else Attribute(a, classes))
    task = TaskSpec(tuple(task_attrs))
    train = merge(train_tables, task)
    test = None
    if all((root / "test" / f"{a}.csv").is_file() for a in attributes):
        test = merge({a: read_split_table(root, "test", a, index, cfg) for a in attributes}, task)
    return train, None, test


def merge(tables: dict[str, tuple[pd.DataFrame, Path]], task: TaskSpec) -> LabelledImages:
    """Rows merged by image across attribute tables; -1 where an attribute lacks the image."""
    order: dict[str, int] = {}
    sources: list[str] = []
    for table, _ in tables.values():
        for p, w in zip(table["_path"], table["_where"]):
            if p not in order:
                order[p] = len(order)
                sources.append(w)
    labels = np.full((len(order), len(task)), -1, dtype=np.int64)
    for a, attr in enumerate(task.attributes):
        table, path = tables[attr.name]
        codes = encode(table["_label"], attr.classes, path, attr.name)
        rows = np.array([order[p] for p in table["_path"]], dtype=np.int64)
        labels[rows, a] = codes
    return LabelledImages([Path(p) for p in order], labels, task, sources)


GSS_FORMAT = DataFormat(read=read_gss, single_label=True,
                        summary="Global StreetScapes folder: img/, train/<attribute>.csv, test/<attribute>.csv")
