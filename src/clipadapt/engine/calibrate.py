"""Calibration after model selection, fitted on the validation split, never on test.

temperature (Guo et al. 2017): one temperature per attribute.
platt (Platt 1999; multi-label runs): a scale a and a bias b per attribute,
p(yes) = sigmoid(a d + b) with d = z_yes - z_no, for a model whose miscalibration is a
shift rather than over-confidence (docs/calibration.md). The fit minimises the
cross-entropy against Platt's smoothed targets ((P + 1) / (P + 2) for the P positives,
1 / (M + 2) for the M negatives), which keeps b finite when validation is separable; a is
kept in [1 / T_MAX, 1 / T_MIN] so p stays increasing in d. The method holds T = 1 / a and b.

Each attribute's logits z become z / T (T > 0). T is the minimiser of the validation
negative log-likelihood of softmax(z / T) over the attribute's labelled rows. That NLL is
convex in 1 / T, so a bounded one-dimensional search on log T finds its one minimum.
Dividing by T keeps every single-label argmax; a multi-label attribute's p(present) =
sigmoid(z / T) keeps its side of 0.5, so decisions at the default threshold (0.5) are
unchanged too, and a threshold other than 0.5 then applies to calibrated probabilities.

The temperatures and biases live in the method (`Method.temperature`, `Method.platt_bias`,
applied on the way out of forward / forward_images), so evaluation, `predict`, `serve`,
`explain` and the ONNX export all use them; the checkpoint holds them and the card says
how they were fitted (key `calibration`). The multi-label decision thresholds
(engine/thresholds.py) are chosen on the same uncalibrated validation logits and mapped
through the calibration, so calibrating never changes a decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import logsumexp

from clipadapt.config import RunConfig
from clipadapt.data.dataset import DataSplits
from clipadapt.errors import ClipAdaptError
from clipadapt.metrics.calibration import BINS, expected_calibration_error, negative_log_likelihood, softmax
from clipadapt.engine.thresholds import choose_cuts, logit, mapped_threshold, thresholds_entry
from clipadapt.task import MISSING

# The search range of T: wide enough for a CLIP logit scale of 100 read as probabilities
# (T ~ 10-50 is common for zero-shot) and for an underconfident head (T < 1).
T_MIN, T_MAX = 0.01, 100.0


@dataclass
class TemperatureFit:
    """One attribute's fitted temperature and its validation NLL before / after."""

    temperature: float
    nll_before: float | None
    nll_after: float | None
    rows: int  # labelled validation rows it was fitted on
    at_bound: bool = False  # the optimum lies at T_MIN or T_MAX (the NLL is still falling there)


def scaled_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean -log softmax(logits / T)[label] (exact, through logsumexp); labels all >= 0."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return float((logsumexp(z, axis=1) - z[np.arange(len(labels)), labels]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> TemperatureFit:
    """The temperature minimising the NLL of softmax(logits / T) on the labelled rows.

    Args:
        logits: [N, K] uncalibrated logits of one attribute.
        labels: [N] class ids, -1 where not labelled (those rows are left out).

    Returns:
        TemperatureFit; T = 1 when no row is labelled (nothing to fit on).
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    keep = labels != MISSING
    z, y = logits[keep], labels[keep].astype(np.int64)
    if not len(y):
        return TemperatureFit(1.0, None, None, 0)
    nll_at_one = scaled_nll(z, y, 1.0)
    found = minimize_scalar(lambda log_t: scaled_nll(z, y, math.exp(log_t)), bounds=(math.log(T_MIN), math.log(T_MAX)),
                            method="bounded", options={"xatol": 1e-6})
    temperature, nll = math.exp(float(found.x)), float(found.fun)
    if nll >= nll_at_one:  # flat NLL (e.g. constant logits): keep the model as it is
        temperature, nll = 1.0, nll_at_one
    at_bound = min(abs(math.log(temperature / T_MIN)), abs(math.log(temperature / T_MAX))) < 1e-3
    return TemperatureFit(temperature, nll_at_one, nll, int(len(y)), at_bound)


@dataclass
class PlattFit:
    """One binary attribute's Platt scale and bias, with its validation NLL before / after."""

    scale: float
    bias: float
    nll_before: float | None
    nll_after: float | None
    rows: int


def platt_nll(diff: np.ndarray, labels: np.ndarray, scale: float, bias: float) -> float:
    """Mean -log p(label) under p(yes) = sigmoid(scale * diff + bias) (labels 0/1)."""
    s = scale * diff + bias
    return float(np.mean(np.logaddexp(0.0, s) - labels * s))


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> PlattFit:
    """Platt's scale and bias of one binary attribute from its [N, 2] uncalibrated logits.

    Rows labelled -1 are left out; with no labelled row, or when the fit does not lower the
    validation NLL, the attribute stays as it was (scale 1, bias 0).
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    keep = labels != MISSING
    d, y = logits[keep, 1] - logits[keep, 0], labels[keep].astype(np.float64)
    if not len(y):
        return PlattFit(1.0, 0.0, None, None, 0)
    positives = y.sum()
    target = np.where(y == 1, (positives + 1) / (positives + 2), 1.0 / (len(y) - positives + 2))

    def loss_and_grad(ab):
        s = ab[0] * d + ab[1]
        residual = 1.0 / (1.0 + np.exp(-s)) - target
        return float(np.mean(np.logaddexp(0.0, s) - target * s)), np.array([np.mean(residual * d), np.mean(residual)])

    found = minimize(loss_and_grad, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                     bounds=[(1.0 / T_MAX, 1.0 / T_MIN), (None, None)])
    scale, bias = float(found.x[0]), float(found.x[1])
    before, after = platt_nll(d, y, 1.0, 0.0), platt_nll(d, y, scale, bias)
    if not after < before:  # no better than the model as it is: keep it
        scale, bias, after = 1.0, 0.0, before
    return PlattFit(scale, bias, before, after, int(len(y)))


def needs_validation(cfg: RunConfig) -> str | None:
    """The setting that needs a labelled validation split (None when none does)."""
    if cfg.train.calibrate != "none":
        return f"train.calibrate={cfg.train.calibrate}"
    if cfg.train.thresholds != "fixed":
        return f"train.thresholds={cfg.train.thresholds}"
    return None


def require_validation(cfg: RunConfig, splits: DataSplits) -> None:
    """Calibration and tuned thresholds need labelled validation images, and Platt scaling and
    tuned thresholds a multi-label task: say so before training."""
    multilabel = splits.task.multilabel
    for name, value, allowed in (("calibrate", cfg.train.calibrate, ("none", "temperature")),
                                 ("thresholds", cfg.train.thresholds, ("fixed",))):
        if value not in allowed and not multilabel:
            raise ClipAdaptError(
                f"train.{name}={value} applies to multi-label tasks (a threshold or a bias per present/absent "
                f"attribute); this task is single-label, decided by the most probable class. Use "
                f"train.{name}={allowed[-1] if name == 'calibrate' else 'fixed'}.")
    setting = needs_validation(cfg)
    if setting is None:
        return
    if splits.val is None or not len(splits.val) or not (np.asarray(splits.val.labels) != MISSING).any():
        raise ClipAdaptError(
            f"{setting} is fitted on the validation split, and this data has no labelled validation images (never "
            "the test split). Give it one (data.val_fraction > 0, or data.val_manifest), or set "
            "train.calibrate=none and train.thresholds=fixed.")


def calibrate_run(runner, splits: DataSplits, cfg: RunConfig) -> tuple[dict | None, dict | None]:
    """Fit the calibration (cfg.train.calibrate) and choose the decision thresholds
    (cfg.train.thresholds) on splits.val, set them in runner.method, and return the card's
    `calibration` entry (None when 'none') and `thresholds` entry (None for single-label tasks).

    `calibration`: {"method": "temperature" | "platt", "split": "val", "temperatures": {attr: T},
    ("scales", "biases" for platt), "val": {"ece_before", "ece_after", "nll_before",
    "nll_after"} (means over attributes), "attributes": {attr: the same four, "rows",
    "temperature" (and "scale", "bias")}, "notes": [...]}.
    `thresholds`: engine.thresholds.thresholds_entry.
    """
    method, task = runner.method, runner.method.task
    fixed_threshold = cfg.train.threshold
    if needs_validation(cfg) is None:
        method.set_thresholds([fixed_threshold] * len(task))
        return None, (thresholds_entry("fixed", task.names, [], [fixed_threshold] * len(task),
                                       [fixed_threshold] * len(task), fixed_threshold) if task.multilabel else None)
    require_validation(cfg, splits)
    method.set_temperatures([1.0] * len(task))  # fit on the uncalibrated logits
    method.set_biases([0.0] * len(task))
    logits = runner.predict_logits(splits.val, description="calibrate")
    labels = np.asarray(splits.val.labels)
    temperatures, biases = [1.0] * len(task), [0.0] * len(task)
    calibration = None
    if cfg.train.calibrate == "temperature":
        fits = [fit_temperature(logits[a], labels[:, a]) for a in range(len(task))]
        temperatures = [f.temperature for f in fits]
    elif cfg.train.calibrate == "platt":
        fits = [fit_platt(logits[a], labels[:, a]) for a in range(len(task))]
        temperatures, biases = [1.0 / f.scale for f in fits], [f.bias for f in fits]
    if cfg.train.calibrate != "none":
        method.set_temperatures(temperatures)
        method.set_biases(biases)
        calibration = _calibration_entry(cfg.train.calibrate, task, logits, labels, fits, temperatures, biases)
    if not task.multilabel:
        return calibration, None
    choices = choose_cuts(logits, labels, cfg.train.thresholds, fixed_threshold)
    thresholds = [mapped_threshold(c.cut, t, b) for c, t, b in zip(choices, temperatures, biases)]
    fixed = [mapped_threshold(logit(fixed_threshold), t, b) for t, b in zip(temperatures, biases)]
    method.set_thresholds(thresholds)
    return calibration, thresholds_entry(cfg.train.thresholds, task.names, choices, thresholds, fixed, fixed_threshold)


def shifted(logits: np.ndarray, temperature: float, bias: float) -> np.ndarray:
    """Logits as the calibrated method outputs them: z / T, plus (-b/2, +b/2) on two classes."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if z.shape[1] == 2 and bias:
        z = z + np.array([-0.5 * bias, 0.5 * bias])
    return z


def _calibration_entry(kind: str, task, logits, labels, fits, temperatures, biases) -> dict:
    """The card's `calibration`: per attribute ECE and NLL before / after on validation."""
    attributes, notes = {}, []
    for a, (attr, fit) in enumerate(zip(task.attributes, fits)):
        before, after = softmax(logits[a]), softmax(shifted(logits[a], temperatures[a], biases[a]))
        attributes[attr.name] = {
            "temperature": temperatures[a], "rows": fit.rows,
            **({"scale": fit.scale, "bias": fit.bias} if kind == "platt" else {}),
            "ece_before": expected_calibration_error(before, labels[:, a], task.multilabel),
            "ece_after": expected_calibration_error(after, labels[:, a], task.multilabel),
            "nll_before": negative_log_likelihood(before, labels[:, a]),
            "nll_after": negative_log_likelihood(after, labels[:, a]),
        }
        if not fit.rows:
            notes.append(f"{attr.name}: no labelled validation images; it stays uncalibrated.")
        elif getattr(fit, "at_bound", False):
            notes.append(f"{attr.name}: the fitted temperature {fit.temperature:.3g} is at the end of the search range "
                         f"[{T_MIN}, {T_MAX}] (the validation NLL still falls there).")
    fitted = [row for row in attributes.values() if row["rows"]]
    mean = {key: float(np.mean([row[key] for row in fitted])) if fitted else None
            for key in ("ece_before", "ece_after", "nll_before", "nll_after")}
    extra = {"scales": {n: r["scale"] for n, r in attributes.items()},
             "biases": {n: r["bias"] for n, r in attributes.items()}} if kind == "platt" else {}
    return {"method": kind, "split": "val", "bins": BINS,
            "temperatures": {name: row["temperature"] for name, row in attributes.items()}, **extra,
            "val": mean, "attributes": attributes, **({"notes": notes} if notes else {})}
