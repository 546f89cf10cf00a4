"""Manifest reader: CSV or Parquet with an image-path column and label columns."""

from __future__ import annotations

from pathlib import Path

from clipadapt.config import DataConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.tables import encode, label_map, normalised, read_table, require_columns, where
from clipadapt.errors import ClipAdaptError
from clipadapt.task import Attribute, TaskSpec


def _table(path: Path, cfg: DataConfig):
    table = read_table(path)
    require_columns(table, [cfg.path_column, *cfg.attributes], path)
    base = Path(cfg.root).expanduser() if cfg.root else path.parent
    paths, sources = [], []
    for row, value in enumerate(table[cfg.path_column]):
        value = value.strip()
        if not value:
            raise ClipAdaptError(f"{where(path, row)}: empty '{cfg.path_column}'. Fill it or remove the row.")
        image = Path(value).expanduser()
        image = image if image.is_absolute() else base / image
        if not image.is_file():
            raise ClipAdaptError(f"Image not found: {image} ({where(path, row)}). Fix the path or remove the row.")
        paths.append(image)
        sources.append(where(path, row))
    return table, paths, sources


def read_manifest(cfg: DataConfig):
    """Train (and optional val/test) sets from manifests; the label map comes from train."""
    if cfg.train_manifest is None:
        raise ClipAdaptError("data.train_manifest is required for format 'manifest' (a CSV or Parquet file).")
    if not cfg.attributes:
        raise ClipAdaptError("data.attributes must list the label column(s) of the manifest, e.g. [weather].")
    train_path = Path(cfg.train_manifest).expanduser()
    table, paths, sources = _table(train_path, cfg)
    attrs = []
    for name in cfg.attributes:
        classes = label_map(normalised(table[name]))
        if not classes:
            raise ClipAdaptError(f"{train_path}: column '{name}' has no labels.")
        attrs.append(Attribute(name, classes, cfg.templates.get(name, "a photo of a {}."),
                               {k.lower(): v for k, v in cfg.class_words.get(name, {}).items()}))
    task = TaskSpec(tuple(attrs))

    def build(path: Path, table, paths, sources) -> LabelledImages:
        import numpy as np

        labels = np.stack([encode(normalised(table[a.name]), a.classes, path, a.name) for a in task.attributes], axis=1)
        return LabelledImages(paths, labels, task, sources)

    train = build(train_path, table, paths, sources)
    others = []
    for extra in (cfg.val_manifest, cfg.test_manifest):
        if extra is None:
            others.append(None)
            continue
        path = Path(extra).expanduser()
        others.append(build(path, *_table(path, cfg)))
    return train, others[0], others[1]
