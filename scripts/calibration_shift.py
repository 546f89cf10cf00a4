"""Is a multi-label run's miscalibration over-confidence or a shift? Fit per attribute on
the validation split a temperature (a scale) and a scale plus a bias (Platt scaling), and
compare their test ECE with the raw scores.

Run: python scripts/calibration_shift.py RUN_DIR [RUN_DIR ...]   (multi-label runs only;
the run's own data set is read again from its config.yaml, and any temperature it holds
is undone first; the fits are clipadapt's own, engine/calibrate.py). A temperature fixes over- or under-confidence; when only the bias helps,
the scores sit on the wrong side of the threshold by a roughly constant amount.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from clipadapt.config import load_config
from clipadapt.data.formats import build_splits
from clipadapt.engine.calibrate import fit_platt, fit_temperature, shifted
from clipadapt.engine.checkpoint import load_run
from clipadapt.engine.trainer import Runner
from clipadapt.metrics.calibration import expected_calibration_error, softmax


def shift_report(run_dir: Path) -> dict[str, float]:
    """Mean test ECE (%) over the attributes: raw, after a temperature, after Platt, each
    fitted per attribute on validation with clipadapt's own fits (engine/calibrate.py)."""
    cfg = load_config(run_dir / "config.yaml")
    method, _ = load_run(run_dir)
    if not method.task.multilabel:
        raise SystemExit(f"{run_dir} is not a multi-label run.")
    splits = build_splits(cfg.data)
    if splits.val is None:
        raise SystemExit(f"{run_dir}: its data has no validation split to fit on.")
    method.set_temperatures([1.0] * len(method.task))  # undo the run's own calibration
    method.set_biases([0.0] * len(method.task))
    runner = Runner(method, cfg, progress=False)
    val, test = runner.predict_logits(splits.val, show=False), runner.predict_logits(splits.test, show=False)
    scores: dict[str, list[float]] = {"raw": [], "temperature": [], "platt": []}
    for a in range(len(method.task)):
        yv, yt = splits.val.labels[:, a], splits.test.labels[:, a]
        platt = fit_platt(val[a], yv)
        fits = {"raw": (1.0, 0.0), "temperature": (fit_temperature(val[a], yv).temperature, 0.0),
                "platt": (1.0 / platt.scale, platt.bias)}
        for name, (temperature, bias) in fits.items():
            probs = softmax(shifted(test[a], temperature, bias))
            scores[name].append(expected_calibration_error(probs, yt, True))
    return {name: round(100 * float(np.mean(values)), 1) for name, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    for run_dir in parser.parse_args().runs:
        print(run_dir, shift_report(run_dir))


if __name__ == "__main__":
    main()
