"""Validation splits and K-shot subsets: stratified, seeded, reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clipadapt.data.dataset import LabelledImages
from clipadapt.errors import ClipAdaptError
from clipadapt.task import MISSING


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
