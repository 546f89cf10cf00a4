"""Temperature scaling (Guo et al. 2017): one temperature per attribute, fitted on the
validation split after model selection, never on test.

Each attribute's logits z become z / T (T > 0). T is the minimiser of the validation
negative log-likelihood of softmax(z / T) over the attribute's labelled rows. That NLL is
convex in 1 / T, so a bounded one-dimensional search on log T finds its one minimum.
Dividing by T keeps every single-label argmax; a multi-label attribute's p(present) =
sigmoid(z / T) keeps its side of 0.5, so decisions at the default threshold (0.5) are
unchanged too, and a threshold other than 0.5 then applies to calibrated probabilities.

The temperatures live in the method (`Method.temperature`, applied on the way out of
forward / forward_images), so evaluation, `predict`, `serve`, `explain` and the ONNX
export all use them; the checkpoint holds them (key `temperature`) and the card says
how they were fitted (key `calibration`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from clipadapt.config import RunConfig
from clipadapt.data.dataset import DataSplits
from clipadapt.errors import ClipAdaptError
from clipadapt.metrics.calibration import BINS, expected_calibration_error, negative_log_likelihood, softmax
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


def require_validation(cfg: RunConfig, splits: DataSplits) -> None:
    """train.calibrate=temperature needs labelled validation images: say so before training."""
    if cfg.train.calibrate != "temperature":
        return
    if splits.val is None or not len(splits.val) or not (np.asarray(splits.val.labels) != MISSING).any():
        raise ClipAdaptError(
            "train.calibrate=temperature fits the temperatures on the validation split, and this data has no labelled "
            "validation images (never the test split). Give it one (data.val_fraction > 0, or data.val_manifest), "
            "or set train.calibrate=none.")


def calibrate_run(runner, splits: DataSplits, cfg: RunConfig) -> dict | None:
    """Fit one temperature per attribute on splits.val, set them in runner.method, and return
    the card's `calibration` entry (None when cfg.train.calibrate is 'none').

    The entry: {"method": "temperature", "split": "val", "temperatures": {attr: T},
    "val": {"ece_before", "ece_after", "nll_before", "nll_after"} (means over attributes),
    "attributes": {attr: the same four, "rows", "temperature"}, "notes": [...]}.
    """
    if cfg.train.calibrate != "temperature":
        return None
    require_validation(cfg, splits)
    method, task = runner.method, runner.method.task
    method.set_temperatures([1.0] * len(task))  # fit on the uncalibrated logits
    logits = runner.predict_logits(splits.val, description="calibrate")
    labels = np.asarray(splits.val.labels)
    fits = [fit_temperature(logits[a], labels[:, a]) for a in range(len(task))]
    method.set_temperatures([f.temperature for f in fits])
    attributes, notes = {}, []
    for a, (attr, fit) in enumerate(zip(task.attributes, fits)):
        before, after = softmax(logits[a]), softmax(logits[a] / fit.temperature)
        attributes[attr.name] = {
            "temperature": fit.temperature, "rows": fit.rows,
            "ece_before": expected_calibration_error(before, labels[:, a], task.multilabel),
            "ece_after": expected_calibration_error(after, labels[:, a], task.multilabel),
            "nll_before": negative_log_likelihood(before, labels[:, a]),
            "nll_after": negative_log_likelihood(after, labels[:, a]),
        }
        if not fit.rows:
            notes.append(f"{attr.name}: no labelled validation images; its temperature stays 1.")
        elif fit.at_bound:
            notes.append(f"{attr.name}: the fitted temperature {fit.temperature:.3g} is at the end of the search range "
                         f"[{T_MIN}, {T_MAX}] (the validation NLL still falls there).")
    fitted = [row for row in attributes.values() if row["rows"]]
    mean = {key: float(np.mean([row[key] for row in fitted])) if fitted else None
            for key in ("ece_before", "ece_after", "nll_before", "nll_after")}
    return {"method": "temperature", "split": "val", "bins": BINS,
            "temperatures": {name: row["temperature"] for name, row in attributes.items()},
            "val": mean, "attributes": attributes, **({"notes": notes} if notes else {})}
