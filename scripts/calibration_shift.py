"""Is a multi-label run's miscalibration over-confidence or a shift? Fit per attribute on
the validation split a temperature (a scale) and a scale plus a bias (Platt scaling), and
compare their test ECE with the raw scores.

Run: python scripts/calibration_shift.py RUN_DIR [RUN_DIR ...]   (multi-label runs only;
the run's own data set is read again from its config.yaml, and any temperature it holds
is undone first). A temperature fixes over- or under-confidence; when only the bias helps,
the scores sit on the wrong side of the threshold by a roughly constant amount.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from clipadapt.config import load_config
from clipadapt.data.formats import build_splits
from clipadapt.engine.checkpoint import load_run
from clipadapt.engine.trainer import Runner
from clipadapt.metrics.calibration import expected_calibration_error


def binary_margin(logits: np.ndarray) -> np.ndarray:
    """z of a multi-label attribute's [0, z] logits (any common offset drops out)."""
    return logits[:, 1] - logits[:, 0]


def fit_scale_and_bias(margin: np.ndarray, labels: np.ndarray, with_bias: bool) -> tuple[float, float]:
    """Scale (and bias) minimising the binary cross-entropy of sigmoid(scale * z + bias)."""
    def nll(params):
        q = 1 / (1 + np.exp(-(params[0] * margin + (params[1] if with_bias else 0.0))))
        return -np.mean(labels * np.log(q + 1e-12) + (1 - labels) * np.log(1 - q + 1e-12))

    found = minimize(nll, [1.0, 0.0] if with_bias else [1.0], method="Nelder-Mead").x
    return float(found[0]), float(found[1]) if with_bias else 0.0


def shift_report(run_dir: Path) -> dict[str, float]:
    """Mean test ECE (%) over the attributes: raw, after a temperature, after Platt."""
    cfg = load_config(run_dir / "config.yaml")
    method, _ = load_run(run_dir)
    if not method.task.multilabel:
        raise SystemExit(f"{run_dir} is not a multi-label run.")
    splits = build_splits(cfg.data)
    if splits.val is None:
        raise SystemExit(f"{run_dir}: its data has no validation split to fit on.")
    runner = Runner(method, cfg, progress=False)
    val, test = runner.predict_logits(splits.val, show=False), runner.predict_logits(splits.test, show=False)
    temperatures = method.temperatures()
    scores: dict[str, list[float]] = {"raw": [], "temperature": [], "platt": []}
    for a in range(len(method.task)):
        undo = float(temperatures[a]) if temperatures is not None else 1.0
        zv, zt = binary_margin(val[a]) * undo, binary_margin(test[a]) * undo
        yv, yt = splits.val.labels[:, a], splits.test.labels[:, a]
        kv, kt = yv >= 0, yt >= 0
        fits = {"raw": (1.0, 0.0), "temperature": fit_scale_and_bias(zv[kv], yv[kv], False),
                "platt": fit_scale_and_bias(zv[kv], yv[kv], True)}
        for name, (scale, bias) in fits.items():
            q = 1 / (1 + np.exp(-(scale * zt[kt] + bias)))
            scores[name].append(expected_calibration_error(np.stack([1 - q, q], 1), yt[kt], binary=True))
    return {name: round(100 * float(np.mean(values)), 1) for name, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    for run_dir in parser.parse_args().runs:
        print(run_dir, shift_report(run_dir))


if __name__ == "__main__":
    main()
