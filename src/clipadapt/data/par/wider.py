"""WIDER Attribute (SPEC 2): text annotations + person crops under root/split_image/.

root/Annotations/ holds, per split, `<split>_name.txt` (one image path per line,
relative to split_image/) and `<split>_gt_label.txt` (one line per image:
"[1, -1, 0, ...]", 14 values). The splits are train [+ val] + test, or (PromptPAR's
preprocessed copy) trainval + test. An optional attr_name.txt names the columns.

Raw values of the WIDER Attribute release: 1 = positive, -1 = negative,
0 = unspecified (the annotator could not tell). They become 1, 0 and, for
unspecified, -1 = ignored (data.par.uncertain: negative gives the field's "<= 0 -> 0",
which counts every unspecified attribute as absent).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from clipadapt.config import DataConfig
from clipadapt.data.par.options import ParOptions, check_par_settings, dataset_root, par_options, under_root
from clipadapt.data.par.table import ParTable, to_splits
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DataFormat

WIDER_14 = ("Male", "longHair", "sunglass", "Hat", "Tshirt", "longSleeve", "formal", "shorts", "jeans",
            "longPants", "skirt", "faceMask", "logo", "stripe")


def read_wider(cfg: DataConfig, options: ParOptions | dict | None = None):
    """(train, val, test) LabelledImages of WIDER Attribute (val None unless the files have one)."""
    opts = par_options(cfg, options)
    root = dataset_root(cfg, "wider", "Annotations/ and split_image/")
    return to_splits(wider_table(root, opts), cfg, opts.check_images)


WIDER_FORMAT = DataFormat(read=read_wider, check=check_par_settings, reads=("par",),
                          summary="WIDER Attribute: Annotations/ text files and split_image/ crops (14 attributes)")


def wider_table(root: Path, opts: ParOptions) -> ParTable:
    folder = under_root(root, opts.annotation) or root / "Annotations"
    if not folder.is_dir():
        raise ClipAdaptError(f"WIDER: no annotation folder {folder}. Set data.root to the dataset root "
                             "(or data.par.annotation to the Annotations folder).")
    names = _attribute_names(folder)
    images, rows, sources, splits = [], [], [], {}
    for split, stem in _split_files(folder).items():
        split_images, split_rows, split_sources = _read_split(folder, stem, len(names))
        splits[split] = np.arange(len(images), len(images) + len(split_images))
        images += split_images
        rows += split_rows
        sources += split_sources
    return ParTable(
        dataset="WIDER",
        source=folder,
        image_names=images,
        labels=np.array(rows, dtype=np.int64).reshape(len(rows), len(names)),
        names=names,
        default_columns=list(range(len(names))),
        value_map={1: 1, -1: 0, 0: opts.uncertain_label},
        splits=splits,
        image_root=under_root(root, opts.image_dir) or root / "split_image",
        sentences="wider",
        row_sources=sources,
    )


def _split_files(folder: Path) -> dict[str, str]:
    """split -> file stem: train (or trainval), val when train has one, test."""
    def present(stem: str) -> bool:
        return (folder / f"{stem}_name.txt").is_file() and (folder / f"{stem}_gt_label.txt").is_file()

    if present("train"):
        found = {"train": "train", **({"val": "val"} if present("val") else {})}
    elif present("trainval"):
        found = {"train": "trainval"}
    else:
        raise ClipAdaptError(
            f"WIDER: {folder} needs train_name.txt + train_gt_label.txt (or trainval_*); it has "
            f"{sorted(p.name for p in folder.glob('*.txt'))}."
        )
    if present("test"):
        found["test"] = "test"
    return found


def _attribute_names(folder: Path) -> list[str]:
    path = folder / "attr_name.txt"
    if not path.is_file():
        return list(WIDER_14)
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ClipAdaptError(f"WIDER: {path} lists no attribute names.")
    return names


def _lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, text) of the non-blank lines."""
    text = path.read_text(encoding="utf-8")
    return [(k + 1, line.strip()) for k, line in enumerate(text.splitlines()) if line.strip()]


def _read_split(folder: Path, stem: str, width: int) -> tuple[list[str], list[list[int]], list[str]]:
    name_file, label_file = folder / f"{stem}_name.txt", folder / f"{stem}_gt_label.txt"
    names, labels = _lines(name_file), _lines(label_file)
    if len(names) != len(labels):
        raise ClipAdaptError(
            f"WIDER: {name_file} lists {len(names)} images but {label_file} has {len(labels)} label lines."
        )
    rows = [_parse_labels(text, width, f"{label_file} line {k}") for k, text in labels]
    return [text for _, text in names], rows, [f"{label_file.name} line {k}" for k, _ in labels]


def _parse_labels(text: str, width: int, where: str) -> list[int]:
    """"[1, -1, 0, ...]" (brackets and commas optional) -> list of ints."""
    tokens = [t for t in re.split(r"[\s,]+", text.strip().strip("[]")) if t]
    try:
        values = [int(t) for t in tokens]
    except ValueError:
        raise ClipAdaptError(f"WIDER: {where}: labels must be integers (1, -1, 0); got '{text}'.") from None
    if len(values) != width:
        raise ClipAdaptError(f"WIDER: {where} has {len(values)} labels; expected {width} (one per attribute).")
    return values
