"""PA100K (SPEC 2): root/annotation.mat + images under root/data/ (or the release's
root/release_data/release_data/). 26 attributes, kept in file order (as PromptPAR),
fixed 80k / 10k / 10k train / val / test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipadapt.config import DataConfig
from clipadapt.data.par.matfile import as_strings, get_field, load_mat
from clipadapt.data.par.options import ParOptions, check_par_settings, dataset_root, par_options, under_root
from clipadapt.data.par.table import ParTable, to_splits
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DataFormat

IMAGE_DIRS = ("data", "release_data/release_data")  # unpacked release vs. the field's layout


def read_pa100k(cfg: DataConfig, options: ParOptions | dict | None = None):
    """(train, val, test) LabelledImages of PA100K; labels 1 / 0 per attribute."""
    opts = par_options(cfg, options)
    root = dataset_root(cfg, "pa100k", "annotation.mat and data/")
    return to_splits(pa100k_table(root, opts), cfg, opts.check_images)


PA100K_FORMAT = DataFormat(read=read_pa100k, check=check_par_settings, reads=("par",),
                           summary="PA100K: annotation.mat and data/ (26 attributes)")


def pa100k_table(root: Path, opts: ParOptions) -> ParTable:
    path = under_root(root, opts.annotation) or root / "annotation.mat"
    mat = load_mat(path)
    names, labels, splits, start = [], [], {}, 0
    for split in ("train", "val", "test"):
        images = as_strings(get_field(mat, (f"{split}_images_name",), path.name), f"{path.name}:{split}_images_name")
        block = np.atleast_2d(np.asarray(get_field(mat, (f"{split}_label",), path.name)))
        if block.shape[0] != len(images):
            raise ClipAdaptError(
                f"{path}: {split}_label has {block.shape[0]} rows but {split}_images_name lists {len(images)} images."
            )
        names += images
        labels.append(block)
        splits[split] = np.arange(start, start + len(images))
        start += len(images)
    attributes = as_strings(get_field(mat, ("attributes",), path.name), f"{path.name}:attributes")
    widths = {b.shape[1] for b in labels}
    if widths != {len(attributes)}:
        raise ClipAdaptError(f"{path}: the label matrices have {sorted(widths)} columns for {len(attributes)} attributes.")
    return ParTable(
        dataset="PA100K",
        source=path,
        image_names=names,
        labels=np.concatenate(labels),
        names=attributes,
        default_columns=list(range(len(attributes))),
        value_map={0: 0, 1: 1},
        splits=splits,
        image_root=under_root(root, opts.image_dir) or _image_root(root),
        sentences="pa100k",
    )


def _image_root(root: Path) -> Path:
    for candidate in IMAGE_DIRS:
        if (root / candidate).is_dir():
            return root / candidate
    return root / IMAGE_DIRS[0]  # missing images are reported by to_splits, naming this folder
