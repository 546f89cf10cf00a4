"""Single-label (multiclass) metrics, per attribute and averaged over attributes.

Every number returned is a plain Python int / float / None, so a metrics dict goes to
JSON as it is. Conventions (SPEC 1, "Metrics reported"):

- Rows whose true label is -1 (`clipadapt.task.MISSING`) are not labelled for that
  attribute and are dropped before anything is computed.
- Macro-F1 averages over the classes present in y_true OR y_pred (scikit-learn's
  behaviour with ``labels=None``). A class that is neither in the labels nor predicted
  says nothing about the model, so it must not pull the mean down to a value that
  depends on how many such classes the label map happens to have; a class that is
  predicted but never true does count (with F1 = 0), since those predictions are wrong.
- Balanced accuracy is scikit-learn's chance-adjusted one: (mean recall - 1/K) / (1 - 1/K)
  with K the number of classes present in y_true, so 0 = chance (e.g. always predicting
  the majority class) and 1 = perfect. With a single true class it is undefined and
  reported as None.
- The confusion matrix and the per-class report always cover every class of the
  attribute, in label-map order, so files and plots of different splits line up.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix, f1_score

from clipadapt.io import atomic_write
from clipadapt.errors import ClipAdaptError
from clipadapt.metrics.table import HEADLINE
from clipadapt.task import MISSING, TaskSpec

# The scores averaged over attributes in attribute_metrics(...)["mean"].
MEAN_KEYS = HEADLINE  # the per-attribute scores, averaged in metrics["mean"]


class MetricsInputError(ClipAdaptError, ValueError):
    """Labels / predictions that metrics cannot be computed from.

    A ValueError for library callers, a ClipAdaptError so the CLI prints it cleanly.
    """


# ------------------------------------------------------------------ one attribute
def multiclass_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, macro/weighted F1, adjusted balanced accuracy, per-class accuracy,
    confusion matrix and per-class report of single-label predictions.

    Args:
        y_true: [N] integer class ids in [0, K), or -1 for rows without a label.
        y_pred: [N] integer predicted class ids in [0, K).
        class_names: the K class names, in class-id order.

    Returns:
        dict with ``n`` (labelled rows used), ``accuracy``, ``macro_f1``,
        ``weighted_f1``, ``balanced_accuracy`` (chance-adjusted; None when y_true has a
        single class), ``per_class_accuracy`` {class: recall, None without true
        samples}, ``confusion_matrix`` (K x K counts, rows = true, columns = predicted)
        and ``report`` {class: {precision, recall, f1-score, support}}.

    Raises:
        MetricsInputError (a ValueError): no labelled rows, mismatched lengths, or ids
        outside [0, K).

    Example:
        >>> import numpy as np
        >>> y_true = np.array([0, 0, 1, 1, 2, -1])
        >>> y_pred = np.array([0, 1, 1, 1, 2, 0])
        >>> m = multiclass_metrics(y_true, y_pred, ["clear", "cloudy", "foggy"])
        >>> m["n"], round(m["accuracy"], 4), round(m["macro_f1"], 4)
        (5, 0.8, 0.8222)
        >>> m["confusion_matrix"]
        [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
        >>> m["per_class_accuracy"]
        {'clear': 0.5, 'cloudy': 1.0, 'foggy': 1.0}
    """
    names = [str(c) for c in class_names]
    y_true, y_pred = _labelled_rows(y_true, y_pred, len(names))
    ids = list(range(len(names)))
    cm = confusion_matrix(y_true, y_pred, labels=ids)
    return {
        "n": int(y_true.size),
        "accuracy": float(np.mean(y_true == y_pred)),
        # labels=None on purpose: average over classes seen in y_true or y_pred (module doc).
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "balanced_accuracy": _adjusted_balanced_accuracy(y_true, y_pred),
        "per_class_accuracy": _per_class_recall(cm, names),
        "confusion_matrix": cm.astype(int).tolist(),
        "report": _per_class_report(y_true, y_pred, names),
    }


def _labelled_rows(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated int64 copies of the rows that carry a label."""
    y_true = _as_ids(y_true, "y_true")
    y_pred = _as_ids(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise MetricsInputError(
            f"y_true and y_pred must have the same length; got {y_true.size} labels and {y_pred.size} predictions.")
    if num_classes < 1:
        raise MetricsInputError("class_names is empty; pass the attribute's class names in class-id order.")
    keep = y_true != MISSING
    y_true, y_pred = y_true[keep], y_pred[keep]
    if y_true.size == 0:
        raise MetricsInputError(
            "No labelled rows to compute metrics on (the input is empty or every label is -1 = not labelled); "
            "evaluate on a split that has labels for this attribute.")
    for what, ids in (("label", y_true), ("prediction", y_pred)):
        bad = (ids < 0) | (ids >= num_classes)
        if bad.any():
            raise MetricsInputError(
                f"{what} id {int(ids[bad][0])} is outside [0, {num_classes}) for {num_classes} classes; "
                "labels and predictions must be class ids of the same label map.")
    return y_true, y_pred


def _as_ids(values, what: str) -> np.ndarray:
    """A 1-D int64 array; floats are accepted only when they hold whole numbers."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise MetricsInputError(f"{what} must be one-dimensional [N]; got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0)):
            raise MetricsInputError(f"{what} must hold integer class ids; got dtype {arr.dtype}.")
    return arr.astype(np.int64)


def _adjusted_balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    # With one true class the chance level is 1 and scikit-learn divides by zero (-inf).
    if np.unique(y_true).size < 2:
        return None
    with warnings.catch_warnings():
        # Expected whenever a class is predicted but absent from y_true; not news.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y_true, y_pred, adjusted=True))


def _per_class_recall(cm: np.ndarray, names: list[str]) -> dict[str, float | None]:
    support = cm.sum(axis=1)
    return {name: (float(cm[k, k] / support[k]) if support[k] else None) for k, name in enumerate(names)}


def _per_class_report(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict[str, dict]:
    """Precision / recall / F1 / support of every class (absent ones included, all 0).

    scikit-learn's "macro avg" row is left out: computed over all K classes it would
    disagree with `macro_f1` (module doc), and the other averages are top-level keys.
    """
    full = classification_report(y_true, y_pred, labels=list(range(len(names))), target_names=names,
                                 output_dict=True, zero_division=0)
    return {
        name: {"precision": float(full[name]["precision"]), "recall": float(full[name]["recall"]),
               "f1-score": float(full[name]["f1-score"]), "support": int(full[name]["support"])}
        for name in names
    }


# ------------------------------------------------------------------ attributes
def attribute_metrics(labels: np.ndarray, preds: np.ndarray, task: TaskSpec) -> dict:
    """multiclass_metrics of every attribute of `task`, and their mean.

    Args:
        labels: [N, A] class ids, -1 where an image is not labelled for an attribute.
        preds: [N, A] predicted class ids.
        task: the A attributes, in column order.

    Returns:
        {"attributes": {name: multiclass_metrics(...)}, "mean": {accuracy, macro_f1,
        weighted_f1, balanced_accuracy}}. An attribute without any labelled row (possible
        in multi-attribute runs) gets ``{"n": 0, ...}`` with None scores and a zero
        confusion matrix, and is left out of the mean; a None score (undefined balanced
        accuracy) is left out of that score's mean.

    Raises:
        MetricsInputError: shapes do not match the task, or no attribute has a label.
    """
    labels, preds = np.asarray(labels), np.asarray(preds)
    shape = (labels.shape[0] if labels.ndim else 0, len(task))
    if labels.ndim != 2 or labels.shape != shape or preds.shape != shape:
        raise MetricsInputError(
            f"labels and preds must both be [N, {len(task)}] for the attributes {task.names}; "
            f"got {labels.shape} and {preds.shape}.")
    per_attribute = {}
    for a, attr in enumerate(task.attributes):
        if np.any(labels[:, a] != MISSING):
            per_attribute[attr.name] = multiclass_metrics(labels[:, a], preds[:, a], list(attr.classes))
        else:
            per_attribute[attr.name] = _unlabelled_entry(list(attr.classes))
    if not any(m["n"] for m in per_attribute.values()):
        raise MetricsInputError(
            f"No labelled rows for any attribute ({', '.join(task.names)}); every label is -1 = not labelled.")
    return {"attributes": per_attribute, "mean": _mean_over_attributes(per_attribute.values())}


def _unlabelled_entry(names: list[str]) -> dict:
    """The metrics entry of an attribute with no labelled rows in this split."""
    k = len(names)
    return {
        "n": 0, **{key: None for key in MEAN_KEYS},
        "per_class_accuracy": {name: None for name in names},
        "confusion_matrix": [[0] * k for _ in range(k)],
        "report": {name: {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0} for name in names},
    }


def _mean_over_attributes(entries) -> dict[str, float | None]:
    mean = {}
    for key in MEAN_KEYS:
        values = [m[key] for m in entries if m["n"] and m[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
    return mean


def headline(metrics: dict, key: str = "macro_f1") -> float:
    """The one number a run is judged by: `key` averaged over attributes.

    Macro-F1 by default, because the GSS classes are heavily imbalanced (SPEC 1).
    """
    if key not in MEAN_KEYS:
        raise MetricsInputError(f"Unknown headline metric '{key}'; choose one of {', '.join(MEAN_KEYS)}.")
    return metrics["mean"][key]


# ------------------------------------------------------------------ confusion matrices
def row_normalised(confusion) -> np.ndarray:
    """Each row divided by its sum (the per-true-class distribution of predictions).

    A row without true samples has nothing to distribute, so it stays all zero rather
    than becoming NaN.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise MetricsInputError(f"A confusion matrix must be square [K, K]; got shape {cm.shape}.")
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


def write_confusion_csv(path: Path, confusion, class_names: Sequence[str], normalise: bool) -> None:
    """Write a confusion matrix as CSV: header ``true\\predicted,<classes...>``, then one
    row per true class starting with its name. Counts are integers; with
    `normalise` every row holds fractions that sum to 1 (0 for a class without samples).
    The file is written atomically.
    """
    names = [str(c) for c in class_names]
    cm = np.asarray(confusion)
    if cm.shape != (len(names), len(names)):
        raise MetricsInputError(
            f"Confusion matrix of shape {cm.shape} does not match the {len(names)} class names {names}.")
    values = row_normalised(cm) if normalise else cm.astype(np.int64)
    cell = (lambda v: f"{v:.6f}") if normalise else (lambda v: str(int(v)))

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["true\\predicted", *names])
            for name, row in zip(names, values):
                writer.writerow([name, *(cell(v) for v in row)])

    atomic_write(Path(path), write)
