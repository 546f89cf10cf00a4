"""Manifest reader: CSV or Parquet with an image-path column and label columns."""

from __future__ import annotations

from pathlib import Path

from clipadapt.config import DataConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.attribute_sets import read_attribute_file
from clipadapt.data.paths import resolve_image_path
from clipadapt.data.tables import (drop_repeated_images, encode, encode_binary, label_map, normalised, read_table,
                                  require_columns, where)
from clipadapt.errors import ClipAdaptError
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec


def _table(path: Path, cfg: DataConfig, columns: list[str]):
    """The rows of one manifest with resolved image paths and their 'file line N' sources;
    repeated images are dropped (same labels) or refused (different labels)."""
    table = read_table(path, cfg.encoding)
    require_columns(table, [cfg.path_column, *columns], path)
    base = Path(cfg.root).expanduser() if cfg.root else path.parent
    paths, sources = [], []
    for row, value in enumerate(table[cfg.path_column]):
        value = value.strip()
        if not value:
            raise ClipAdaptError(f"{where(path, row)}: empty '{cfg.path_column}'. Fill it or remove the row.")
        image = resolve_image_path(value, base, where(path, row), cfg.allow_outside_root)
        # Under on_bad_image=skip a missing file is left out (and listed) with the other bad images.
        if cfg.on_bad_image == "fail" and not image.is_file():
            raise ClipAdaptError(f"Image not found: {image} ({where(path, row)}). Fix the path or remove the row.")
        paths.append(image)
        sources.append(where(path, row))
    keep = drop_repeated_images(paths, table[columns].apply(normalised), path)
    if len(keep) < len(table):
        table = table.iloc[keep].reset_index(drop=True)
        paths, sources = [paths[i] for i in keep], [sources[i] for i in keep]
    return table, paths, sources


def read_manifest(cfg: DataConfig):
    """Train (and optional val/test) sets from manifests; the label map comes from train."""
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
    table, paths, sources = _table(train_path, cfg, names)
    if multilabel:
        task = TaskSpec(tuple(declared), multilabel=True)
    else:
        attrs = []
        for name in names:
            classes = label_map(normalised(table[name]))
            if not classes:
                raise ClipAdaptError(f"{train_path}: column '{name}' has no labels.")
            attrs.append(Attribute(name, classes, cfg.templates.get(name, "a photo of a {}."),
                                   {k.lower(): v for k, v in cfg.class_words.get(name, {}).items()}))
        task = TaskSpec(tuple(attrs))

    def build(path: Path, table, paths, sources) -> LabelledImages:
        import numpy as np

        if multilabel:
            columns = [encode_binary(table[a.name], path, a.name) for a in task.attributes]
        else:
            columns = [encode(normalised(table[a.name]), a.classes, path, a.name) for a in task.attributes]
        return LabelledImages(paths, np.stack(columns, axis=1), task, sources)

    train = build(train_path, table, paths, sources)
    others = []
    for extra in (cfg.val_manifest, cfg.test_manifest):
        if extra is None:
            others.append(None)
            continue
        path = Path(extra).expanduser()
        others.append(build(path, *_table(path, cfg, names)))
    return train, others[0], others[1]


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
