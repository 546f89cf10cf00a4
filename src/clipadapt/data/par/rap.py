"""RAP (SPEC 2): RAP_annotation.mat (v1 or v2, told apart by its fields) + root/RAP_dataset/.

RAPv1 (41,585 images): RAP_annotation.label [N, 92], .attribute_eng names, .imagesname,
    .partion (sic): 5 partitions of trainval / test rows (1-based). The field uses the
    first 51 attributes, in file order; there is no val split (trainval is the train).
RAPv2 (84,928 images): RAP_annotation.data [N, 152], .attribute names, .name,
    .selected_attribute (the 54 evaluated columns, 1-based), .partition_attribute: 5
    partitions of train / val / test rows. The 54 are used in the field's group order.

A raw label 2 marks an uncertain annotation in RAP; data.par.uncertain decides what
it becomes (ignored by default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipadapt.config import DataConfig
from clipadapt.data.par.matfile import as_indices, as_strings, get_field, load_mat
from clipadapt.data.par.options import ParOptions, check_par_settings, dataset_root, par_options, under_root
from clipadapt.data.par.partitions import as_splits, choose, split_rows
from clipadapt.data.par.table import ParTable, to_splits
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DataFormat

ANNOTATION_FILES = ("RAP_annotation/RAP_annotation.mat", "RAP_annotation.mat")
RAP1_EVALUATED = 51  # leading columns of RAPv1's label the field evaluates
# Group order of RAPv2's 54 selected attributes (head, upper, lower, shoes, attachments,
# age, gender, body shape, role, action), as positions within selected_attribute.
RAP2_GROUP_ORDER = (
    *range(10, 45), 1, 2, 3, 4, 0, 5, 6, 7, 8, 9, *range(45, 54),
)


def read_rap(cfg: DataConfig, options: ParOptions | dict | None = None):
    """(train, val, test) LabelledImages of RAPv1 (val is None) or RAPv2, partition
    `split_index`; the standard attributes unless data.attributes names others."""
    opts = par_options(cfg, options)
    root = dataset_root(cfg, "rap", "RAP_annotation/ and RAP_dataset/")
    return to_splits(rap_table(root, opts), cfg, opts.check_images)


RAP_FORMAT = DataFormat(read=read_rap, check=check_par_settings, reads=("par",),
                        summary="RAPv1 / RAPv2: RAP_annotation/ .mat files and RAP_dataset/")


def rap_table(root: Path, opts: ParOptions) -> ParTable:
    path = _annotation_path(root, opts)
    rap = get_field(load_mat(path), ("RAP_annotation",), path.name)
    where = f"{path.name}:RAP_annotation"
    fields = {k.lower() for k in rap} if isinstance(rap, dict) else set()
    if {"data", "selected_attribute", "partition_attribute"} <= fields:
        return _rap2(rap, path, where, root, opts)
    if "label" in fields:
        return _rap1(rap, path, where, root, opts)
    raise ClipAdaptError(
        f"{where} is neither RAPv1 (fields label, attribute_eng, imagesname, partion) nor RAPv2 (fields data, "
        f"attribute, name, selected_attribute, partition_attribute); its fields are {sorted(fields)}."
    )


def _rap1(rap: dict, path: Path, where: str, root: Path, opts: ParOptions) -> ParTable:
    labels = np.atleast_2d(np.asarray(get_field(rap, ("label",), where)))
    names = as_strings(get_field(rap, ("attribute_eng", "attribute"), where), f"{where}.attribute_eng")
    images = as_strings(get_field(rap, ("imagesname", "image_name", "name"), where), f"{where}.imagesname")
    _check_shape(labels, images, names, where)
    part = choose(get_field(rap, ("partion", "partition"), where), opts.split_index, f"{where}.partion")
    rows = split_rows(part, ("trainval", "test"), f"{where}.partion[{opts.split_index}]")
    return _table("RAPv1", path, images, labels, names, list(range(min(RAP1_EVALUATED, len(names)))),
                  rows, root, opts, "rap")


def _rap2(rap: dict, path: Path, where: str, root: Path, opts: ParOptions) -> ParTable:
    labels = np.atleast_2d(np.asarray(get_field(rap, ("data",), where)))
    names = as_strings(get_field(rap, ("attribute",), where), f"{where}.attribute")
    images = as_strings(get_field(rap, ("name", "imagesname"), where), f"{where}.name")
    _check_shape(labels, images, names, where)
    selected = as_indices(get_field(rap, ("selected_attribute",), where), f"{where}.selected_attribute")
    if selected.size and selected.max() >= len(names):
        raise ClipAdaptError(f"{where}.selected_attribute names column {selected.max() + 1} of {len(names)}.")
    if selected.size == len(RAP2_GROUP_ORDER):
        selected = selected[list(RAP2_GROUP_ORDER)]
    part = choose(get_field(rap, ("partition_attribute", "partition"), where), opts.split_index,
                  f"{where}.partition_attribute")
    rows = split_rows(part, ("train", "val", "test"), f"{where}.partition_attribute[{opts.split_index}]")
    return _table("RAPv2", path, images, labels, names, selected.tolist(), rows, root, opts, "rap2")


def _table(dataset, path, images, labels, names, default, rows, root, opts, sentences) -> ParTable:
    return ParTable(
        dataset=dataset,
        source=path,
        image_names=images,
        labels=labels,
        names=names,
        default_columns=default,
        value_map={0: 0, 1: 1, 2: opts.uncertain_label},
        splits=as_splits(rows),
        image_root=under_root(root, opts.image_dir) or root / "RAP_dataset",
        sentences=sentences,
    )


def _check_shape(labels: np.ndarray, images: list[str], names: list[str], where: str) -> None:
    if labels.shape != (len(images), len(names)):
        raise ClipAdaptError(
            f"{where}: the label matrix is {labels.shape[0]} x {labels.shape[1]} but the file lists {len(images)} "
            f"images and {len(names)} attributes."
        )


def _annotation_path(root: Path, opts: ParOptions) -> Path:
    if opts.annotation is not None:
        return under_root(root, opts.annotation)
    for candidate in ANNOTATION_FILES:
        if (root / candidate).is_file():
            return root / candidate
    return root / ANNOTATION_FILES[0]  # load_mat reports it missing
