"""The field's exchange format: the fields of a PAR pickle / its converted copy, checked.

"Rethinking of PAR" and PromptPAR ship each dataset as a pickled EasyDict
(dataset_all.pkl, pad.pkl, dataset_zs_run0.pkl, ...) with:
    image_name  [N] image paths relative to `root`
    label       [N, C] 1 / 0 (RAP: 2 = uncertain; some files -1 = unlabelled)
    attr_name   [C] column names
    root        the image folder on the authors' machine
    partition   {train, val, trainval, test}: 0-based rows, one array or a list of
                arrays (one per random partition)
    label_idx   optional {eval: [...], ...}: the evaluated columns, in order
    attributes  optional (PromptPAR): one sentence per evaluated attribute
`ParRecord` holds these fields; it is built from a pickle (restricted unpickler) or
from the safe converted copy (`par.json` + `labels.npy`), never anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clipadapt.errors import ClipAdaptError

SPLIT_KEYS = ("train", "val", "trainval", "test")


@dataclass
class ParRecord:
    description: str
    root: str
    image_names: list[str]
    labels: np.ndarray
    attr_names: list[str]
    partition: dict[str, list[np.ndarray]]  # split -> one row array per partition
    eval_index: list[int] | None = None
    sentences: list[str] | None = None
    source: str = ""

    def default_columns(self) -> list[int]:
        """label_idx.eval when the matrix still has every column ("Rethinking of PAR"'s
        dataset_all.pkl); all columns when it is already cut to the evaluated ones
        (PromptPAR's pad.pkl stores the cut matrix next to the same eval list, whose
        indices then refer to columns of the original annotation, not of this matrix)."""
        width = self.labels.shape[1]
        if not self.eval_index or width <= len(self.eval_index):
            return list(range(width))
        if any(i < 0 or i >= width for i in self.eval_index):
            raise ClipAdaptError(f"{self.source}: label_idx.eval names a column outside 0-{width - 1}.")
        return list(self.eval_index)

    def sentence_map(self) -> dict[str, str]:
        """Column name -> the file's own sentence (PromptPAR), when they line up."""
        if not self.sentences:
            return {}
        if len(self.sentences) == len(self.attr_names):
            return dict(zip(self.attr_names, self.sentences))
        columns = self.default_columns()
        if len(self.sentences) == len(columns):
            return {self.attr_names[c]: s for c, s in zip(columns, self.sentences)}
        return {}


def record_from_fields(fields: Any, source: str) -> ParRecord:
    """A ParRecord from the loaded dict, with every field checked and named on error."""
    if not isinstance(fields, dict):
        raise ClipAdaptError(f"{source} holds a {type(fields).__name__}, not the dict of a PAR annotation file.")
    missing = [k for k in ("image_name", "label", "attr_name", "partition") if k not in fields]
    if missing:
        raise ClipAdaptError(f"{source} has no field {missing}; its fields are {sorted(map(str, fields))}.")
    names = _strings(fields["image_name"], f"{source}: image_name")
    attrs = _strings(fields["attr_name"], f"{source}: attr_name")
    labels = np.asarray(fields["label"])
    if labels.ndim != 2 or labels.shape != (len(names), len(attrs)) or labels.dtype.kind not in "biuf":
        raise ClipAdaptError(
            f"{source}: label should be a numeric [{len(names)}, {len(attrs)}] matrix (image_name x attr_name); "
            f"got {labels.dtype} {labels.shape}."
        )
    label_idx = fields.get("label_idx")
    eval_index = None
    if isinstance(label_idx, dict) and label_idx.get("eval") is not None:
        eval_index = [int(i) for i in np.asarray(label_idx["eval"]).reshape(-1)]
    sentences = fields.get("attributes")
    return ParRecord(
        description=str(fields.get("description", "") or ""),
        root=str(fields.get("root", "") or ""),
        image_names=names,
        labels=labels,
        attr_names=attrs,
        partition=_partition(fields["partition"], source),
        eval_index=eval_index,
        sentences=_strings(sentences, f"{source}: attributes") if sentences is not None else None,
        source=source,
    )


def _strings(value: Any, where: str) -> list[str]:
    items = value.tolist() if isinstance(value, np.ndarray) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, (str, bytes)) for v in items):
        raise ClipAdaptError(f"{where} should be a list of strings.")
    return [v.decode() if isinstance(v, bytes) else str(v) for v in items]


def _partition(value: Any, source: str) -> dict[str, list[np.ndarray]]:
    if not isinstance(value, dict):
        raise ClipAdaptError(f"{source}: partition should be a dict of {', '.join(SPLIT_KEYS)}.")
    out = {}
    for key, rows in value.items():
        if key not in SPLIT_KEYS or rows is None:
            continue
        arrays = _as_partitions(rows)
        for a in arrays:
            if a.dtype.kind not in "iu" and a.size:
                raise ClipAdaptError(f"{source}: partition.{key} should hold row numbers; found {a.dtype}.")
        out[key] = [a.astype(np.int64) for a in arrays]
    if not out:
        raise ClipAdaptError(f"{source}: partition has none of {', '.join(SPLIT_KEYS)}.")
    return out


def _as_partitions(rows: Any) -> list[np.ndarray]:
    """One array, or a list of arrays (one per partition); a list of ints is one array."""
    if isinstance(rows, (list, tuple)) and rows and all(isinstance(r, (np.ndarray, list, tuple, range)) for r in rows):
        return [np.asarray(list(r) if isinstance(r, range) else r).reshape(-1) for r in rows]
    if isinstance(rows, range):
        rows = list(rows)
    return [np.asarray(rows).reshape(-1)]
