"""Per-attribute decision thresholds of a multi-label run, chosen on the validation split.

A multi-label attribute is present when p(yes) > its threshold. `train.thresholds`:
- fixed: train.threshold for every attribute (0.5 by default; an imported PromptPAR run
  keeps the authors' 0.45);
- f1: per attribute, the threshold that maximises that attribute's F1 on validation;
- balanced: per attribute, the one that maximises its balanced accuracy (the per-attribute
  term of mA) on validation.
Test labels are never read here: the search sees the validation split only.

The search runs on the uncalibrated logit difference d = z_yes - z_no (p = sigmoid(d)):
with the rows sorted by d, predicting the top k positive for every k is one cumulative
sum, and each cut lies half-way between two neighbouring d values (in logit units, so
saturated probabilities near 0 or 1 stay apart). Ties between equally good cuts go to the
one nearest the fixed cut, so a flat score keeps train.threshold.

Calibration never changes a decision: a calibrated p = sigmoid(d / T + b) is increasing in
d, so the threshold stored for an attribute is its cut mapped the same way,
sigmoid(cut / T + b), and "p > threshold" decides exactly as "d > cut" did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clipadapt.task import MISSING

SETTINGS = ("fixed", "f1", "balanced")
EDGE = 1.0  # logit units beyond the highest / lowest d for "every row negative / positive"


def logit(p: float) -> float:
    """log(p / (1 - p)) of a probability in (0, 1)."""
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass
class CutChoice:
    """One attribute's chosen cut on d, with the validation scores at it and at the fixed cut."""

    cut: float
    score: float | None  # the setting's score at `cut` (None: nothing to choose on)
    score_fixed: float | None  # the same score at the fixed cut
    rows: int
    positives: int


def decision_scores(tp: np.ndarray, fp: np.ndarray, positives: int, negatives: int) -> dict[str, np.ndarray]:
    """F1 and balanced accuracy of decisions with `tp` true and `fp` false positives."""
    fn = positives - tp
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    balanced = 0.5 * (tp / max(positives, 1) + (negatives - fp) / max(negatives, 1))
    return {"f1": f1, "balanced": balanced}


def best_cut(diff: np.ndarray, labels: np.ndarray, setting: str, fixed_cut: float) -> CutChoice:
    """The cut on `diff` (d = z_yes - z_no) that maximises the setting's score of d > cut.

    Args:
        diff: [N] logit differences of one attribute on the validation split.
        labels: [N] 1, 0 or -1 (not labelled: left out).
        setting: "f1" or "balanced" ("fixed" returns `fixed_cut`).
        fixed_cut: logit(train.threshold); kept when the attribute has no positive or no
            negative validation row, and preferred among equally good cuts.
    """
    diff, labels = np.asarray(diff, dtype=np.float64), np.asarray(labels)
    keep = labels != MISSING
    d, y = diff[keep], labels[keep] == 1
    positives, rows = int(y.sum()), int(len(y))
    negatives = rows - positives
    score_name = "balanced" if setting == "fixed" else setting
    at_fixed = decision_scores(np.array([int((y & (d > fixed_cut)).sum())]),
                               np.array([int((~y & (d > fixed_cut)).sum())]), positives, negatives)[score_name][0]
    if setting == "fixed" or positives == 0 or negatives == 0:
        return CutChoice(fixed_cut, float(at_fixed) if rows else None, float(at_fixed) if rows else None, rows, positives)
    order = np.argsort(-d, kind="stable")
    ds, ys = d[order], y[order]
    tp = np.concatenate([[0], np.cumsum(ys)])  # predicting the first k rows positive, k = 0..n
    fp = np.concatenate([[0], np.cumsum(~ys)])
    # k rows positive is reachable only where the k-th and (k+1)-th values differ
    ks = np.concatenate([[0], np.flatnonzero(ds[:-1] > ds[1:]) + 1, [rows]])
    cuts = np.where(ks == 0, ds[0] + EDGE, np.where(ks == rows, ds[-1] - EDGE,
                                                     0.5 * (ds[np.maximum(ks - 1, 0)] + ds[np.minimum(ks, rows - 1)])))
    scores = decision_scores(tp[ks], fp[ks], positives, negatives)[setting]
    best = scores.max()
    tied = np.flatnonzero(scores >= best - 1e-12)
    pick = tied[np.argmin(np.abs(cuts[tied] - fixed_cut))]
    return CutChoice(float(cuts[pick]), float(scores[pick]), float(at_fixed), rows, positives)


def choose_cuts(val_logits: list[np.ndarray], val_labels: np.ndarray, setting: str,
                fixed_threshold: float) -> list[CutChoice]:
    """One CutChoice per attribute from uncalibrated validation logits [N, 2] each."""
    fixed_cut = logit(fixed_threshold)
    return [best_cut(z[:, 1] - z[:, 0], val_labels[:, a], setting, fixed_cut) for a, z in enumerate(val_logits)]


def mapped_threshold(cut: float, temperature: float = 1.0, bias: float = 0.0) -> float:
    """The threshold on calibrated p = sigmoid(d / T + b) that decides as d > cut."""
    return sigmoid(cut / temperature + bias)


def thresholds_entry(setting: str, names: list[str], choices: list[CutChoice], thresholds: list[float],
                     fixed: list[float], fixed_threshold: float) -> dict:
    """The card's `thresholds`: the setting, the split, the value per attribute, the fixed
    ones they replace (mapped through the calibration as well) and the validation scores."""
    score = "balanced accuracy" if setting == "balanced" else "F1" if setting == "f1" else None
    entry = {"setting": setting, "split": "val" if setting != "fixed" else None, "threshold": fixed_threshold,
             "values": dict(zip(names, thresholds)), "fixed": dict(zip(names, fixed))}
    if score:
        entry["score"] = score
        entry["attributes"] = {name: {"threshold": t, "val_score": c.score, "val_score_fixed": c.score_fixed,
                                      "rows": c.rows, "positives": c.positives}
                               for name, c, t in zip(names, choices, thresholds)}
        kept = [name for name, c in zip(names, choices) if c.positives in (0, c.rows)]
        if kept:
            entry["notes"] = [f"{', '.join(kept)}: no positive or no negative validation image, so "
                              f"train.threshold ({fixed_threshold:g}) is kept."]
    return entry


def compare_thresholds(labels: np.ndarray, probs: list[np.ndarray], entry: dict | None, names: list[str]) -> dict | None:
    """mA, the two instance F1s and the mean per-attribute F1 of the fixed thresholds and of
    the run's tuned ones (`entry`, the card's `thresholds`) on a labelled split:
    metrics["thresholds"]. None when the run's thresholds are the fixed ones."""
    from clipadapt.metrics.multilabel import par_metrics

    if not entry or entry.get("setting", "fixed") == "fixed" or "fixed" not in entry:
        return None

    yes = np.stack([p[:, 1] for p in probs], axis=1)
    out = {"setting": entry["setting"], "values": entry["values"]}
    for key, source in (("fixed", entry["fixed"]), ("tuned", entry["values"])):
        scores = par_metrics(labels, yes, [source[n] for n in names], names)
        out[key] = {name: scores[name] for name in ("mA", "mean_attribute_f1", "f1_mean_of_samples", "f1_of_means")}
    return out
