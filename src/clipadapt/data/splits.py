"""Validation splits and K-shot subsets: stratified (or by whole groups), seeded, reproducible."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from clipadapt.data.dataset import LabelledImages
from clipadapt.errors import ClipAdaptError
from clipadapt.task import MISSING

LOG = logging.getLogger("clipadapt")


def stratified_split(labels: np.ndarray, fraction: float, seed: int, min_per_class: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (train, val): `fraction` of each class goes to val, at least
    `min_per_class` per class when the class has 2+ images (one always stays in train).
    Unlabelled rows (-1) stay in train."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    val: list[int] = []
    for cls in np.unique(labels[labels != MISSING]):
        rows = np.flatnonzero(labels == cls)
        rng.shuffle(rows)
        take = max(int(round(fraction * len(rows))), min_per_class) if len(rows) > 1 else 0
        val.extend(rows[: min(take, len(rows) - 1)].tolist())
    val_idx = np.sort(np.array(val, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def validation_split(train: LabelledImages, cfg) -> tuple[np.ndarray, np.ndarray]:
    """The (train, val) row indices of the validation split drawn from `train` (a data
    source without one of its own): by whole groups of data.val_group_column when it is
    set (group_split), else stratified on the first attribute (stratified_split, the same
    draw as before the setting existed). `cfg` is the DataConfig."""
    column = cfg.val_group_column
    if column is None:
        tracks = train.tracks or []
        if len({t for t in tracks if t}) >= 2:  # one line: the draw below mixes each track's frames
            LOG.warning("train has a 'track' column, but the validation split is drawn by row, so one track's "
                        "frames land on both sides and validation scores (early stopping, thresholds, "
                        "calibration) come out optimistic; set data.val_group_column=track to keep tracks whole.")
        return stratified_split(train.labels[:, 0], cfg.val_fraction, cfg.split_seed)
    if train.groups is None:
        raise ClipAdaptError(f"data.val_group_column '{column}': format '{cfg.format}' gave no group per row, so the "
                             "validation split cannot be drawn by group; the setting applies to format manifest. "
                             "Remove it, or give the data a validation split of its own.")
    return group_split(train.groups, cfg.val_fraction, cfg.split_seed, column)


def group_split(groups: Sequence[str], fraction: float, seed: int,
                column: str = "group") -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (train, val) by whole groups: every row of a group lands on
    the same side, and val holds close to `fraction` of the rows.

    Rows whose group value is empty ("" after stripping) are each a group of their own.
    The groups (sorted by name, then the empty rows in row order) are shuffled with
    `seed`; in that order each group that still fits under `fraction * len(groups)` rows
    goes to val, then the first one that brings val closer to that target than it is
    (overshooting it), never the last group of train; when no group went, the one nearest
    the target goes. So val and train each get at least one group, and the draw depends on
    the seed and on the groups and their sizes, not on the row order of the named groups.
    Not stratified by class: a whole group moves or none of it does.
    `column` names the setting's column in messages.

    >>> group_split(["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"], 0.2, seed=0)[1].size
    2
    """
    values = np.array([str(g).strip() for g in groups], dtype=object)
    named = sorted({g for g in values if g})
    index = {g: k for k, g in enumerate(named)}
    empty = np.flatnonzero(values == "")
    # group id per row: the named groups first, then one group per empty row
    ids = np.empty(len(values), dtype=np.int64)
    for row, g in enumerate(values):
        if g:
            ids[row] = index[g]
    ids[empty] = len(named) + np.arange(len(empty))
    n_groups = len(named) + len(empty)
    if n_groups < 2:
        held = f"one group ('{named[0]}')" if named else f"{n_groups} groups"
        raise ClipAdaptError(f"data.val_group_column '{column}': the {len(values)} train rows form {held}, but a "
                             "validation split by group needs at least 2 (one on each side). Give the data a "
                             "validation split of its own (data.val_manifest or val rows of data.split_column), "
                             "or remove data.val_group_column.")
    sizes = np.bincount(ids, minlength=n_groups)
    target = fraction * len(values)
    taken = np.zeros(n_groups, dtype=bool)
    in_val = 0
    order = np.random.default_rng(seed).permutation(n_groups)
    # first the groups that fit under the target, then at most one that overshoots it by
    # less than the gap left (every pass in the drawn order; train always keeps a group)
    for fits in (True, False):
        for g in order:
            after = in_val + sizes[g]
            if taken[g] or after >= len(values) or (fits and after > target):
                continue
            if fits or abs(after - target) < abs(in_val - target):
                taken[g] = True
                in_val = after
                if not fits:
                    break
    if not taken.any():  # every group overshoots: the one nearest the target (first in the draw on a tie)
        nearest = order[np.argmin([abs(sizes[g] - target) for g in order])]
        taken[nearest] = True
        in_val = int(sizes[nearest])
    if len(values) and abs(in_val / len(values) - fraction) > max(0.05, fraction / 4):
        LOG.warning("data.val_group_column '%s': the validation split holds %d of %d train rows (%.0f%%, asked "
                    "%.0f%%) in %d of %d groups: groups move whole, and more, smaller ones get closer.", column, in_val, len(values),
                    100 * in_val / len(values), 100 * fraction, int(taken.sum()), n_groups)
    val_idx = np.flatnonzero(taken[ids])
    train_idx = np.flatnonzero(~taken[ids])
    return train_idx, val_idx


def sample_shots(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """K images per class (all of a class with fewer), seeded; sorted row indices."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    chosen: list[int] = []
    for cls in np.unique(labels[labels != MISSING]):
        rows = np.flatnonzero(labels == cls)
        chosen.extend(rng.choice(rows, size=min(k, len(rows)), replace=False).tolist())
    return np.sort(np.array(chosen, dtype=np.int64))


def save_shots(path: Path, images: LabelledImages, indices: np.ndarray) -> None:
    """Write the chosen images' paths as JSON, so the subset can be reproduced and shared."""
    Path(path).write_text(json.dumps({"images": [str(images.paths[i]) for i in indices]}, indent=1) + "\n")


def load_shots(path: Path, images: LabelledImages) -> np.ndarray:
    """Row indices of the images listed in a shots JSON file."""
    try:
        listed = json.loads(Path(path).read_text())["images"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ClipAdaptError(f"Cannot read shots file {path}: {exc}. It must be JSON with an 'images' list.") from None
    where = {str(p): i for i, p in enumerate(images.paths)}
    missing = [p for p in listed if p not in where]
    if missing:
        raise ClipAdaptError(f"{path} lists {len(missing)} images not in the data set (e.g. {missing[0]}).")
    return np.array([where[p] for p in listed], dtype=np.int64)
