"""Calibration: expected calibration error, reliability-diagram bins, negative log-likelihood.

Definitions (SPEC 5, "Calibration"; Guo et al. 2017, "On Calibration of Modern Neural
Networks"; Naeini et al. 2015 for the binning):

- Single-label attribute: the confidence of a row is the probability of its predicted
  (top) class, its outcome 1 when that prediction is right, else 0.
- Multi-label (binary) attribute: the confidence is p(present) itself and the outcome
  the 0/1 label, so a bin compares the mean predicted probability with the observed
  frequency of "present" (the reliability diagram of a binary classifier).
- Rows are put into 15 equal-width bins of confidence; bin b holds (b/15, (b+1)/15]
  (a confidence of exactly 0 goes into the first bin). ECE = sum_b (n_b / N) *
  |mean outcome_b - mean confidence_b|; empty bins add nothing.
- NLL: mean over labelled rows of -log p(true class), p clipped at 1e-12 (the same
  clipping as the engine's validation loss); for a binary attribute the binary
  cross-entropy.

Rows whose label is -1 (not labelled) are dropped first. Every function returns plain
Python numbers (None where undefined: no labelled row) so results go to JSON as they are.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from clipadapt.task import MISSING, TaskSpec

BINS = 15
PROBABILITY_FLOOR = 1e-12


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (numerically stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def confidence_and_outcome(probs: np.ndarray, labels: np.ndarray, binary: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, outcome) of the labelled rows of one attribute.

    Args:
        probs: [N, K] class probabilities (K = 2 for a binary attribute: [p(absent), p(present)]).
        labels: [N] class ids, -1 where not labelled.
        binary: a multi-label attribute: confidence p(present), outcome the 0/1 label;
            otherwise the top-class probability and whether the top class is the label.
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    keep = labels != MISSING
    probs, labels = probs[keep], labels[keep].astype(np.int64)
    if binary:
        return probs[:, 1], labels.astype(np.float64)
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)


def bin_index(confidence: np.ndarray, bins: int = BINS) -> np.ndarray:
    """The equal-width bin of each confidence: b such that b/bins < c <= (b+1)/bins (0 -> bin 0)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges, np.asarray(confidence, dtype=np.float64), side="left") - 1, 0, bins - 1)


def reliability_bins(confidence: np.ndarray, outcome: np.ndarray, bins: int = BINS) -> dict:
    """The reliability diagram's table: per bin its edges, row count, mean confidence and
    mean outcome (accuracy; for a binary attribute the frequency of "present"), None in an
    empty bin."""
    confidence, outcome = np.asarray(confidence, dtype=np.float64), np.asarray(outcome, dtype=np.float64)
    index = bin_index(confidence, bins)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    outcome_sum = np.bincount(index, weights=outcome, minlength=bins)
    return {
        "edges": [float(e) for e in np.linspace(0.0, 1.0, bins + 1)],
        "count": [int(c) for c in count],
        "confidence": [float(s / c) if c else None for s, c in zip(conf_sum, count)],
        "accuracy": [float(s / c) if c else None for s, c in zip(outcome_sum, count)],
    }


def ece_of_bins(table: dict) -> float | None:
    """ECE from a reliability table: sum_b (n_b / N) |accuracy_b - confidence_b|."""
    total = sum(table["count"])
    if not total:
        return None
    return float(sum(n / total * abs(acc - conf)
                     for n, acc, conf in zip(table["count"], table["accuracy"], table["confidence"]) if n))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, binary: bool = False, bins: int = BINS) -> float | None:
    """ECE of one attribute (see the module docstring); None without labelled rows.

    >>> round(expected_calibration_error(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1])), 4)
    0.35
    """
    return ece_of_bins(reliability_bins(*confidence_and_outcome(probs, labels, binary), bins=bins))


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean -log p(true class) over labelled rows (p clipped at 1e-12); None without any."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    keep = labels != MISSING
    if not keep.any():
        return None
    picked = probs[keep, labels[keep].astype(np.int64)]
    return float(-np.log(np.clip(picked, PROBABILITY_FLOOR, None)).mean())


def attribute_calibration(probs: np.ndarray, labels: np.ndarray, binary: bool = False, bins: int = BINS) -> dict:
    """{"ece", "nll", "reliability"} of one attribute."""
    table = reliability_bins(*confidence_and_outcome(probs, labels, binary), bins=bins)
    return {"ece": ece_of_bins(table), "nll": negative_log_likelihood(probs, labels), "reliability": table}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def add_calibration(metrics: dict, labels: np.ndarray, logits: Sequence[np.ndarray], task: TaskSpec,
                    temperatures: Sequence[float] | None = None, biases: Sequence[float] | None = None) -> dict:
    """Add calibration to an evaluation's metrics (in place; also returned).

    Args:
        metrics: `attribute_metrics(...)` output ({"attributes": {name: ...}, "mean": ...}).
        labels: [N, A] class ids (-1: not labelled).
        logits: per attribute [N, K_a], as the model outputs them (already divided by its
            temperature when it was calibrated).
        task: the attributes (multi-label ones are scored as binary).
        temperatures: the temperature of each attribute that `logits` were divided by
            (None: all 1, an uncalibrated model).
        biases: each attribute's Platt bias, added as (-b/2, +b/2) to a two-class
            attribute's logits after the division (None: all 0).

    Adds per attribute "ece", "nll" and "reliability" (the bins of the probabilities the
    model reports), "ece" and "nll" to metrics["mean"] (means over attributes with labels)
    and, when any temperature differs from 1, metrics["calibration"]: per attribute and
    mean, ECE and NLL of the uncalibrated probabilities (softmax((logits - shift) * T)) and
    of the calibrated ones, with the temperatures (and the biases of a Platt fit).
    """
    labels = np.asarray(labels)
    temps = [1.0] * len(task) if temperatures is None else [float(t) for t in temperatures]
    shifts = [0.0] * len(task) if biases is None else [float(b) for b in biases]
    platt = any(b != 0.0 for b in shifts)
    calibrated = platt or any(t != 1.0 for t in temps)
    before_after: dict = {}
    for a, attr in enumerate(task.attributes):
        z = np.asarray(logits[a], dtype=np.float64)
        entry = attribute_calibration(softmax(z), labels[:, a], task.multilabel)
        metrics["attributes"][attr.name].update(entry)
        if calibrated:
            raw = z - np.array([-0.5 * shifts[a], 0.5 * shifts[a]]) if shifts[a] else z
            before = softmax(raw * temps[a])
            before_after[attr.name] = {
                "temperature": temps[a], **({"bias": shifts[a]} if platt else {}),
                "ece_before": expected_calibration_error(before, labels[:, a], task.multilabel),
                "ece_after": entry["ece"],
                "nll_before": negative_log_likelihood(before, labels[:, a]),
                "nll_after": entry["nll"],
            }
    entries = list(metrics["attributes"].values())
    metrics["mean"]["ece"] = _mean(e.get("ece") for e in entries)
    metrics["mean"]["nll"] = _mean(e.get("nll") for e in entries)
    if calibrated:
        metrics["calibration"] = {
            "method": "platt" if platt else "temperature",
            "temperatures": {name: row["temperature"] for name, row in before_after.items()},
            **({"biases": {name: row["bias"] for name, row in before_after.items()}} if platt else {}),
            "attributes": before_after,
            "mean": {key: _mean(row[key] for row in before_after.values())
                     for key in ("ece_before", "ece_after", "nll_before", "nll_after")},
        }
    return metrics
