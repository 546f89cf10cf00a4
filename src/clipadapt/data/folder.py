"""Image-folder reader: root/{train,test}/<class>/* (one attribute)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipadapt.config import DataConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.images import IMAGE_EXTENSIONS
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DataFormat
from clipadapt.task import Attribute, TaskSpec, normalise_class_name


def _class_folders(split_dir: Path) -> dict[str, Path]:
    return {normalise_class_name(p.name): p for p in sorted(split_dir.iterdir()) if p.is_dir()}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_folder(cfg: DataConfig):
    """Train and test sets; class names are the (normalised) train folder names."""
    if cfg.root is None:
        raise ClipAdaptError("data.root is required for format 'folder' (holding train/<class>/ and test/<class>/).")
    root = Path(cfg.root).expanduser()
    if not (root / "train").is_dir():
        raise ClipAdaptError(f"No train/ folder under {root}; expected root/train/<class>/*.")
    train_classes = _class_folders(root / "train")
    if not train_classes:
        raise ClipAdaptError(f"{root / 'train'} has no class folders.")
    name = cfg.attributes[0] if cfg.attributes else "class"
    attr = Attribute(name, tuple(sorted(train_classes)), cfg.templates.get(name, "a photo of a {}."),
                     {k.lower(): v for k, v in cfg.class_words.get(name, {}).items()})
    task = TaskSpec((attr,))

    def split(split_dir: Path) -> LabelledImages:
        folders = _class_folders(split_dir)
        unknown = sorted(set(folders) - set(attr.classes))
        if unknown:
            raise ClipAdaptError(
                f"{split_dir / unknown[0]}: class folder '{unknown[0]}' does not exist in train "
                f"(train classes: {list(attr.classes)})."
            )
        paths, labels = [], []
        for cls, folder in folders.items():
            files = _images(folder)
            paths += files
            labels += [attr.classes.index(cls)] * len(files)
        return LabelledImages(paths, np.array(labels, dtype=np.int64)[:, None], task, [str(p) for p in paths])

    test = split(root / "test") if (root / "test").is_dir() else None
    return split(root / "train"), None, test


def check_one_attribute(cfg: DataConfig) -> None:
    """A class folder (or a benchmark's class list) is one attribute; data.attributes may name it."""
    if len(cfg.attributes) > 1:
        raise ClipAdaptError(f"format '{cfg.format}' holds one attribute (the class), but data.attributes names "
                             f"{len(cfg.attributes)}: {cfg.attributes}. Name one, e.g. [{cfg.attributes[0]}], or none.")


FOLDER_FORMAT = DataFormat(read=read_folder, check=check_one_attribute, single_label=True,
                           summary="class folders: root/train/<class>/*, root/test/<class>/*")
