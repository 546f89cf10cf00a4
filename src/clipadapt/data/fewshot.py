"""The field's few-shot protocol (CoOp, CoCoOp, MaPLe ... all share it) and its base-to-novel
class split.

K-shot subsets: the ones Dassl's `DatasetBase.generate_fewshot_dataset` picks. The items of
a list are grouped by label, the groups in the order their label first appears; each group
in turn gives `random.sample(group, K)` from Python's `random`, seeded once with the run
seed (CoOp's train.py calls Dassl's `set_random_seed(cfg.SEED)` before it builds the
data set, and nothing draws from `random` in between). A group with fewer than K items is
kept whole and draws nothing (Dassl's default, `repeat=False`). CoOp draws the training
subset first, then, from the same stream, the validation subset with min(K, 4) per class
from the split file's val list.

Base-to-novel (CoCoOp): the labels present in train, sorted; the first ceil(n / 2) are the
base classes, the rest the novel ones; each subset is relabelled from 0 in label order.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import numpy as np

from clipadapt.data.dataset import LabelledImages
from clipadapt.errors import ClipAdaptError
from clipadapt.task import Attribute, TaskSpec

VAL_SHOTS = 4  # the few-shot validation set has min(K, 4) images per class


def dassl_fewshot(labels: Sequence[int], shots: int, rng: random.Random) -> list[int]:
    """Row indices Dassl's generate_fewshot_dataset keeps, in its output order (label groups
    in order of first appearance, each group's draw in drawing order). `rng` is the stream:
    random.Random(seed) draws what random.seed(seed) then the module functions draw."""
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels):
        groups.setdefault(int(label), []).append(row)
    chosen: list[int] = []
    for rows in groups.values():
        chosen += rng.sample(rows, shots) if len(rows) >= shots else rows
    return chosen


def draw_fewshot(train: LabelledImages, val: LabelledImages | None, shots: int, seed: int):
    """(train, val) as CoOp builds them for K = `shots` and a seed: K per class of train,
    then min(K, 4) per class of val from the same stream. A source without a val list
    (ImageNet, CUB, the ImageNet variants) gets its min(K, 4) from the train images the
    K-shot draw left, drawn the same way afterwards (so the K-shot train is still Dassl's)."""
    rng = random.Random(seed)
    picked = dassl_fewshot(train.labels[:, 0], shots, rng)
    if val is not None:
        return train.subset(picked), val.subset(dassl_fewshot(val.labels[:, 0], min(shots, VAL_SHOTS), rng))
    left = np.setdiff1d(np.arange(len(train)), picked)  # sorted: the source's order
    held = left[dassl_fewshot(train.labels[left, 0], min(shots, VAL_SHOTS), rng)]
    return train.subset(picked), train.subset(held)


CLASS_SUBSETS = ("all", "base", "novel")


def class_subset(which: str, train: LabelledImages, *others: LabelledImages | None):
    """Keep the base or the novel classes (data.class_subset) of every split, relabelled from
    0; the attribute's classes (hence its prompts) follow. Returns (train, *others)."""
    if which == "all":
        return (train, *others)
    task = train.task
    if len(task) != 1 or task.multilabel:
        raise ClipAdaptError(f"data.class_subset={which} splits the classes of one single-label attribute; "
                             f"this task has {len(task)} attribute(s){' (multi-label)' if task.multilabel else ''}.")
    present = sorted(set(int(v) for v in train.labels[:, 0] if v >= 0))
    if len(present) < 2:
        raise ClipAdaptError(f"data.class_subset={which} needs at least 2 classes in train; it has {len(present)}.")
    half = math.ceil(len(present) / 2)
    return keep_classes(present[:half] if which == "base" else present[half:], train, *others)


def present_classes(train: LabelledImages, *others: LabelledImages | None):
    """Keep only the classes that have an image in some split, relabelled from 0 in label
    order (data.restrict_to_present_classes): ImageNet-A and -R hold 200 of ImageNet's
    1,000 classes and are scored 200-way, as CoOp does. Returns (train, *others) unchanged
    when every class is present, or for a multi-label task."""
    task = train.task
    if task.multilabel or len(task) != 1:
        return (train, *others)
    labels = np.concatenate([images.labels[:, 0] for images in (train, *others) if images is not None])
    present = sorted(set(int(v) for v in labels if v >= 0))
    if len(present) == task.attributes[0].num_classes:
        return (train, *others)
    return keep_classes(present, train, *others)


def keep_classes(kept: Sequence[int], train: LabelledImages, *others: LabelledImages | None):
    """Every split narrowed to the images of the labels `kept` (sorted), relabelled 0..len-1;
    the attribute's classes (hence its prompts) follow. Returns (train, *others)."""
    attr = train.task.attributes[0]
    new_task = TaskSpec((Attribute(attr.name, tuple(attr.classes[k] for k in kept), attr.template,
                                   dict(attr.class_words)),))
    relabel = np.full(attr.num_classes, -1, dtype=np.int64)
    relabel[list(kept)] = np.arange(len(kept))

    def narrow(images: LabelledImages | None) -> LabelledImages | None:
        if images is None:
            return None
        rows = np.flatnonzero(np.isin(images.labels[:, 0], kept))
        part = images.subset(rows)
        return LabelledImages(part.paths, relabel[part.labels[:, 0]][:, None], new_task, part.sources)

    return (narrow(train), *(narrow(images) for images in others))
