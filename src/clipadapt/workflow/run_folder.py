"""The one writer of a run folder: config, history, evaluation, checkpoint + card, curves,
report. `train_run` and `adapt_run` write through it, so every run folder has the same
files and `eval`, `predict`, `report` and `export` read them alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.config import RunConfig, dump_config
from clipadapt.data.dataset import LabelledImages
from clipadapt.engine.checkpoint import write_checkpoint
from clipadapt.engine.trainer import RESUME_INFO, RESUME_STATE
from clipadapt.errors import ClipAdaptError
from clipadapt.io import atomic_write, write_json, write_text
from clipadapt.metrics.classification import write_confusion_csv
from clipadapt.metrics.plots import plot_confusion, plot_curves
from clipadapt.predict.columns import prediction_columns
from clipadapt.report.html import write_report_or_warn

RESUME_FILES = (RESUME_STATE, RESUME_INFO)  # spent once the run is finished


def prepare_run_dir(out: Path, resume: bool) -> Path:
    """Create the run folder; refuse to overwrite a finished run unless resuming."""
    out = Path(out)
    if (out / "card.json").is_file() and not resume:
        raise ClipAdaptError(f"{out} already holds a finished run. Choose another --out, or delete it first.")
    out.mkdir(parents=True, exist_ok=True)
    return out


class RunFolder:
    """A run folder being written. `write=False` (a rank > 0 of a torchrun job) writes nothing."""

    def __init__(self, path: Path, resume: bool = False, write: bool = True):
        self.path = prepare_run_dir(path, resume)
        self.write = write

    def write_config(self, cfg: RunConfig) -> None:
        """config.yaml: the settings as the run resolved them."""
        if self.write:
            write_text(self.path / "config.yaml", dump_config(cfg))

    def write_history(self, history: list[dict]) -> None:
        if self.write:
            write_json(self.path / "history.json", history)

    def write_evaluation(self, metrics: dict, probs: list[np.ndarray], images: LabelledImages,
                         threshold: float = 0.5) -> None:
        """metrics.json, predictions.csv and the confusion matrices of a test evaluation."""
        if self.write:
            write_evaluation(self.path, metrics, probs, images, threshold)

    def finish(self, method, card: dict, history: list[dict], curve_keys: tuple[str, ...] | None = None) -> None:
        """The trained tensors with the card, the training curves, and the report; the
        resume state is spent. Written last: a folder with card.json is a finished run."""
        if not self.write:
            return
        write_checkpoint(self.path, method, card)
        if history:
            plot_curves(history, self.path / "curves.png", **({"keys": curve_keys} if curve_keys else {}))
        for name in RESUME_FILES:
            (self.path / name).unlink(missing_ok=True)
        write_report_or_warn(self.path)  # after everything else: a failing figure only warns


def write_evaluation(out: Path, metrics: dict, probs: list[np.ndarray], images: LabelledImages,
                     threshold: float = 0.5) -> None:
    """metrics.json, predictions.csv, and per-attribute confusion matrices (CSV, PNG) or,
    for a multi-label task, one per-attribute table (per_attribute.csv)."""
    write_json(out / "metrics.json", metrics)
    task = images.task
    if task.multilabel:
        table = pd.DataFrame(metrics["multilabel"]["per_attribute"])
        atomic_write(out / "per_attribute.csv", lambda p: table.to_csv(p, index=False))
    for attr in () if task.multilabel else task.attributes:
        cm = np.asarray(metrics["attributes"][attr.name]["confusion_matrix"])
        write_confusion_csv(out / f"confusion_{attr.name}.csv", cm, list(attr.classes), normalise=False)
        plot_confusion(cm, list(attr.classes), out / f"confusion_{attr.name}.png", title=f"{attr.name} (row-normalised)")
    predictions = predictions_table(images, probs, threshold)
    atomic_write(out / "predictions.csv", lambda p: predictions.to_csv(p, index=False))


def predictions_table(images: LabelledImages, probs: list[np.ndarray], threshold: float = 0.5) -> pd.DataFrame:
    """One row per image: path, per attribute the true label (if any, column
    '<attribute>:true'), then the prediction columns of `prediction_columns`."""
    task = images.task
    table: dict = {"path": [str(p) for p in images.paths]}
    for a, attr in enumerate(task.attributes):
        labels = images.labels[:, a]
        if (labels >= 0).any():
            table[f"{attr.name}:true"] = labels if task.multilabel else [attr.classes[y] if y >= 0 else "" for y in labels]
    predicted = prediction_columns(task, probs, threshold)
    # keep each attribute's true label next to its prediction
    ordered = {"path": table.pop("path")}
    for attr in task.attributes:
        if f"{attr.name}:true" in table:
            ordered[f"{attr.name}:true"] = table[f"{attr.name}:true"]
        ordered.update({k: v for k, v in predicted.items() if k == attr.name or k.startswith(f"{attr.name}:p")})
    return pd.DataFrame(ordered)
