"""The in-memory form every reader produces: image paths plus an integer label matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipadapt.task import MISSING, TaskSpec


@dataclass
class LabelledImages:
    """Image paths with labels for every attribute of a task.

    Attributes:
        paths: absolute image paths, one per row.
        labels: int64 array [N, A]; class index into task.attributes[a].classes, or
            MISSING (-1) where the image is not labelled for that attribute. For
            unlabelled data (prediction, label-free methods) every entry is MISSING.
        task: the attributes and their class lists (the run's ONE label map).
        sources: for each row, where it came from (e.g. "train/weather.csv:17"), used in
            error messages; optional.
        tracks: for each row, the tracked object it shows (a manifest's `track` column; ""
            for none), so evaluation can score per track (predict/tracks.py); optional.
        groups: for each row, its value of data.val_group_column (stripped; "" for none),
            which a drawn validation split keeps on one side (data/splits.py); optional.
    """

    paths: list[Path]
    labels: np.ndarray
    task: TaskSpec
    sources: list[str] | None = None
    tracks: list[str] | None = None
    groups: list[str] | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(len(self.paths), len(self.task))

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index) -> "LabelledImages":
        """Rows `index` (array of ints or bool mask), same task."""
        idx = np.arange(len(self))[index]
        return LabelledImages(
            [self.paths[i] for i in idx],
            self.labels[idx],
            self.task,
            [self.sources[i] for i in idx] if self.sources is not None else None,
            [self.tracks[i] for i in idx] if self.tracks is not None else None,
            [self.groups[i] for i in idx] if self.groups is not None else None,
        )

    def class_counts(self, attribute: int = 0) -> np.ndarray:
        """Number of labelled images per class of one attribute."""
        col = self.labels[:, attribute]
        return np.bincount(col[col != MISSING], minlength=self.task.attributes[attribute].num_classes)

    def describe(self, row: int) -> str:
        """Where row `row` came from, for error messages."""
        if self.sources is not None:
            return f"{self.sources[row]} ({self.paths[row]})"
        return str(self.paths[row])


@dataclass
class DataSplits:
    """train / val / test sets sharing one task (label map built from train).

    `skipped`: images left out under data.on_bad_image=skip (clipadapt.data.bad_images.SkippedImage).
    """

    train: LabelledImages
    val: LabelledImages | None
    test: LabelledImages | None
    skipped: list = field(default_factory=list)

    @property
    def task(self) -> TaskSpec:
        return self.train.task
