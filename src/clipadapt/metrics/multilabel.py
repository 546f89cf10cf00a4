"""Pedestrian-attribute (multi-label) metrics: the field's label- and instance-based scores.

Every attribute is binary: label 1 = positive, 0 = negative, -1 = ignored (not
labelled). A prediction is positive when its probability is strictly greater than the
threshold (``prob > threshold``, as in the field's code). ``EPS = 1e-20`` guards every
division, exactly as the published evaluation code does, so an empty denominator gives
0 / (0 + eps) = 0 rather than NaN.

Label-based (per attribute j, then averaged):
    mA = mean_j 0.5 * (TP_j / (#pos_j + eps) + TN_j / (#neg_j + eps))
    An attribute without positives (or without negatives) in the split therefore scores
    0 on that half, which is what the field reports; check ``per_attribute`` for it.

Instance-based (per sample i, then averaged over samples), with Y_i = attributes that
are truly positive and P_i = attributes predicted positive:
    accuracy  = |Y n P| / (|Y u P| + eps)
    precision = |Y n P| / (|P| + eps)
    recall    = |Y n P| / (|Y| + eps)
    f1_mean_of_samples = mean_i 2 P_i R_i / (P_i + R_i + eps)      (PromptPAR's code)
    f1_of_means        = 2 P R / (P + R + eps), P, R the averages  ("Rethinking of PAR")

Ignored labels (-1) are excluded from both Y and P of that sample: a positive
prediction on an ignored attribute is neither right nor wrong. (The field's code, which
never sees -1 in its benchmarks, would count it in P.)

All-negative samples (|Y| = 0): the recall term is 0 / (0 + eps) = 0, exactly as in the
field's code, so such a sample pulls recall (and its F1) down even when nothing was
predicted; its accuracy term is 0 as well (|Y u P| = 0 gives 0 / eps = 0). Precision
of a sample with no predicted positive is likewise 0. Datasets whose samples nearly all
have some positive attribute (PA100K, PETA, RAP) are barely affected; the convention is
kept so numbers compare with published ones.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from clipadapt.metrics.classification import MetricsInputError

EPS = 1e-20

__all__ = ["EPS", "par_metrics", "positive_rates"]


def par_metrics(labels, probs, threshold: float | Sequence[float] = 0.5,
                attribute_names: Sequence[str] | None = None) -> dict:
    """mA, per-attribute table and instance-based scores of multi-label predictions.

    Args:
        labels: [N, A] integers in {1, 0, -1} (positive, negative, ignored).
        probs: [N, A] predicted probabilities (any real scores work with a matching
            threshold).
        threshold: a prediction is positive when ``probs > threshold``; one number, or one
            per attribute (tuned thresholds, engine/thresholds.py).
        attribute_names: A names for the per-attribute rows (default "attribute_j").

    Returns:
        A JSON-serialisable dict: ``n`` (samples), ``threshold`` (a number, or a list with
        one per attribute), ``mA``, ``accuracy``, ``precision``, ``recall``,
        ``f1_mean_of_samples``, ``f1_of_means``, ``mean_attribute_f1`` (the mean over
        attributes of each attribute's F1 of "present") and ``per_attribute``: one row per
        attribute with ``attribute``, ``positives``, ``negatives``, ``tp``, ``tn``, ``fp``,
        ``positive_recall``, ``negative_recall``, ``balanced_accuracy``, ``f1``.

    Raises:
        MetricsInputError (a ValueError): shapes differ or are not 2-D, N = 0, a label
        outside {1, 0, -1}, a non-finite probability, or a wrong number of names.

    Example:
        >>> m = par_metrics([[1, 0], [0, 1]], [[0.9, 0.2], [0.6, 0.7]], attribute_names=["hat", "bag"])
        >>> m["mA"], m["accuracy"], m["precision"], m["recall"]
        (0.75, 0.75, 0.75, 1.0)
        >>> m["per_attribute"][0]["negative_recall"]
        0.0
    """
    labels, probs = _checked(labels, probs)
    names = _names(attribute_names, labels.shape[1])
    is_pos = labels == 1
    is_neg = labels == 0
    # Predictions on ignored entries are dropped, so they count neither as TP/TN nor in |P|.
    cut = np.asarray(threshold, dtype=np.float64)
    if cut.ndim and cut.shape != (labels.shape[1],):
        raise MetricsInputError(f"threshold must be one number or one per attribute ({labels.shape[1]}); "
                                f"got {cut.shape[0]}.")
    predicted = (probs > cut) & (labels != -1)

    positives, negatives = is_pos.sum(0), is_neg.sum(0)
    tp = (is_pos & predicted).sum(0)
    tn = (is_neg & ~predicted).sum(0)
    pos_recall = tp / (positives + EPS)
    neg_recall = tn / (negatives + EPS)
    balanced = 0.5 * (pos_recall + neg_recall)
    fp = (is_neg & predicted).sum(0)
    attribute_f1 = 2 * tp / (2 * tp + fp + (positives - tp) + EPS)

    hits = (is_pos & predicted).sum(1)
    union = (is_pos | predicted).sum(1)
    sample_prec = hits / (predicted.sum(1) + EPS)
    sample_rec = hits / (is_pos.sum(1) + EPS)
    sample_f1 = 2 * sample_prec * sample_rec / (sample_prec + sample_rec + EPS)
    precision, recall = float(sample_prec.mean()), float(sample_rec.mean())

    table = [
        {
            "attribute": names[j],
            "positives": int(positives[j]),
            "negatives": int(negatives[j]),
            "tp": int(tp[j]),
            "tn": int(tn[j]),
            "fp": int(fp[j]),
            "positive_recall": float(pos_recall[j]),
            "negative_recall": float(neg_recall[j]),
            "balanced_accuracy": float(balanced[j]),
            "f1": float(attribute_f1[j]),
        }
        for j in range(len(names))
    ]
    return {
        "n": int(labels.shape[0]),
        "threshold": cut.tolist() if cut.ndim else float(cut),
        "mA": float(balanced.mean()),
        "accuracy": float((hits / (union + EPS)).mean()),
        "precision": precision,
        "recall": recall,
        "f1_mean_of_samples": float(sample_f1.mean()),
        "f1_of_means": float(2 * precision * recall / (precision + recall + EPS)),
        "mean_attribute_f1": float(attribute_f1.mean()),
        "per_attribute": table,
    }


def positive_rates(labels) -> np.ndarray:
    """Fraction of positives among the labelled entries of each attribute ([A] float64).

    Ignored entries (-1) are left out of both counts. An attribute with no labelled
    entry has no rate: NaN (rather than a made-up 0), so a loss weighting built on it
    fails loudly instead of silently.

    >>> positive_rates([[1, 0, -1], [0, 0, -1], [1, -1, -1]]).tolist()
    [0.6666666666666666, 0.0, nan]
    """
    labels = _labels(labels)
    positives = (labels == 1).sum(0)
    labelled = (labels != -1).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(labelled > 0, positives / np.maximum(labelled, 1), np.nan)


def _labels(labels) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise MetricsInputError(f"labels must be a 2-D [N, A] matrix; got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isin(arr, (1.0, 0.0, -1.0))):
            raise MetricsInputError(f"labels must hold 1, 0 or -1; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    bad = ~np.isin(arr, (1, 0, -1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise MetricsInputError(
            f"labels must be 1 (positive), 0 (negative) or -1 (ignored); found {arr[row, col]} at row {row}, "
            f"attribute {col}.")
    return arr


def _checked(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    labels = _labels(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != labels.shape:
        raise MetricsInputError(f"labels and probs must have the same [N, A] shape; got {labels.shape} and {probs.shape}.")
    if labels.shape[0] == 0 or labels.shape[1] == 0:
        raise MetricsInputError(f"No samples or no attributes to compute metrics on (shape {labels.shape}).")
    if not np.all(np.isfinite(probs)):
        row, col = np.argwhere(~np.isfinite(probs))[0]
        raise MetricsInputError(f"probs holds a non-finite value ({probs[row, col]}) at row {row}, attribute {col}.")
    return labels, probs


def _names(names: Sequence[str] | None, count: int) -> list[str]:
    if names is None:
        return [f"attribute_{j}" for j in range(count)]
    names = [str(n) for n in names]
    if len(names) != count:
        raise MetricsInputError(f"attribute_names has {len(names)} names for {count} attribute columns.")
    return names
