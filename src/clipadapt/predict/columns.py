"""The prediction columns of a table, the same for `predict`, evaluation and reports.

Single-label attribute `a`: column `a` holds the predicted class, `a:p(<class>)` every
class probability and `a:entropy` the uncertainty of that vector: its entropy divided by
log(K), so 0 = one class holds all the probability, 1 = all K classes are equally likely
(see `normalised_entropy`). Multi-label attribute `a`: column `a` holds the 0/1 decision
(p > its threshold: one for every attribute, or the run's per-attribute ones) and `a:p`
the probability that it is present. (A run folder's
predictions.csv, written by evaluation, keeps the class and probability columns only.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from clipadapt.task import TaskSpec

Thresholds = float | Sequence[float]  # one for every attribute, or one per attribute


def per_attribute(threshold: Thresholds, count: int) -> list[float]:
    """`threshold` as one float per attribute (a single number is repeated)."""
    if isinstance(threshold, (int, float, np.floating)):
        return [float(threshold)] * count
    values = [float(t) for t in threshold]
    if len(values) != count:
        raise ValueError(f"{len(values)} thresholds for {count} attributes")
    return values


def prediction_columns(task: TaskSpec, probs: list[np.ndarray], threshold: Thresholds = 0.5,
                       ok: np.ndarray | None = None) -> dict[str, list | np.ndarray]:
    """Columns for `probs` ([N, K_a] per attribute); rows with ok == False stay empty
    (class "" / decision -1 / probability NaN). `threshold`: a multi-label attribute is
    present when p > threshold (one number, or one per attribute)."""
    n = len(probs[0]) if probs else 0
    ok = np.ones(n, dtype=bool) if ok is None else np.asarray(ok, dtype=bool)
    cuts = per_attribute(threshold, len(task))
    columns: dict[str, list | np.ndarray] = {}
    for a, attr in enumerate(task.attributes):
        p = np.asarray(probs[a], dtype=np.float32)
        if task.multilabel:
            yes = np.where(ok, p[:, 1], np.nan).astype(np.float32)
            columns[attr.name] = np.where(ok, (p[:, 1] > cuts[a]).astype(np.int64), -1)
            columns[f"{attr.name}:p"] = yes
            continue
        best = np.nan_to_num(p, nan=-1.0).argmax(1) if n else np.zeros(0, dtype=np.int64)
        columns[attr.name] = [attr.classes[k] if ok[i] else "" for i, k in enumerate(best)]
        for k, cls in enumerate(attr.classes):
            columns[f"{attr.name}:p({cls})"] = np.where(ok, p[:, k], np.nan)
        # last in the attribute's block: readers that pick `a:p(...)` columns see no change
        columns[f"{attr.name}:entropy"] = np.where(ok, normalised_entropy(p), np.nan).astype(np.float32)
    return columns


def normalised_entropy(p: np.ndarray) -> np.ndarray:
    """Per row of [N, K] probabilities: -sum p log p / log K, in [0, 1] (0 log 0 = 0; a
    one-class attribute is certain, 0). NaN rows (unusable images) stay NaN."""
    p = np.asarray(p, dtype=np.float64)
    p = p.reshape(len(p), -1) if p.ndim != 2 else p
    if p.shape[1] < 2:
        return np.where(np.isnan(p).any(axis=1), np.nan, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    terms = np.where(np.isnan(p), np.nan, terms)
    # float32 probabilities sum to 1 within ~1e-7: clipped so the column stays in [0, 1]
    return np.clip(-terms.sum(axis=1) / np.log(p.shape[1]), 0.0, 1.0) + 0.0  # + 0.0: no -0.0


def probability_table(task: TaskSpec, items: list, probs: list[np.ndarray], ok: np.ndarray, errors: list[str],
                      threshold: Thresholds = 0.5):
    """`clipadapt predict`'s table (a pandas DataFrame): path, ok, error, then the prediction
    columns. `items` are the images' paths; an in-memory image (anything not a path) has
    None in the path column."""
    import os

    import pandas as pd

    table = {"path": [str(p) if isinstance(p, (str, os.PathLike)) else None for p in items],
             "ok": np.asarray(ok, dtype=bool), "error": list(errors)}
    table.update(prediction_columns(task, probs, threshold, ok))
    return pd.DataFrame(table)
