"""Helpers of the report tests (no tests here): a run folder written by hand.

The folder holds what `clipadapt train` writes, built without training, the synthetic
renderer or the embedded model: an untrained CLIP-MHAdapter on the random micro CLIP,
a few tiny PNGs, predictions chosen so the gallery order is known, and the metrics of
those predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clipadapt.config import RunConfig
from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.engine.checkpoint import build_card, write_checkpoint
from clipadapt.io import write_json
from clipadapt.methods import build_method
from clipadapt.metrics.classification import attribute_metrics
from clipadapt.metrics.plots import plot_confusion, plot_curves
from clipadapt.task import TaskSpec

ATTRIBUTES = ("weather", "pano_status")
# Per image: (true class, predicted class, probability of the predicted class).
WEATHER = [("clear", "clear", 0.9), ("cloudy", "rainy", 0.6), ("rainy", "rainy", 0.55),
           ("snowy", "clear", 0.8), ("clear", "clear", 0.7), ("foggy", "cloudy", 0.4)]
PANO = [("false", "false", 0.9), ("true", "true", 0.8), ("false", "false", 0.7),
        ("false", "false", 0.95), ("true", "false", 0.85), ("true", "true", 0.6)]
# The gallery order these give: wrong by probability descending, then right ascending.
WEATHER_ORDER = [3, 1, 5, 2, 4, 0]
IMAGE_SIZES = [(48, 36), (40, 40), (36, 52), (64, 48), (30, 30), (50, 44)]


def make_task() -> TaskSpec:
    return TaskSpec(tuple(gss_attribute(a, GSS_SCHEMA[a][1]) for a in ATTRIBUTES))


def write_images(folder: Path) -> list[Path]:
    """Small PNGs of different sizes and aspect ratios (so centre crops matter)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(IMAGE_SIZES):
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def probabilities(rows, classes) -> np.ndarray:
    """Rows whose predicted class has the given probability, the rest spread evenly."""
    probs = np.zeros((len(rows), len(classes)))
    for i, (_true, pred, p) in enumerate(rows):
        probs[i] = (1 - p) / (len(classes) - 1)
        probs[i, classes.index(pred)] = p
    return probs


def make_run(folder: Path, backbone, method_name: str = "mhadapter", evaluated: bool = True,
             figures: bool = True) -> Path:
    """A run folder: card + checkpoint always; metrics.json, predictions.csv and history
    when `evaluated`; confusion/curves PNGs when `figures`."""
    folder.mkdir(parents=True, exist_ok=True)
    task = make_task()
    method = build_method(method_name, backbone, task)
    config = RunConfig.model_validate({"backbone": {"name": backbone.name, "pretrained": None},
                                       "method": {"name": method_name}}).model_dump(mode="json")
    card = build_card(method, seed=42, config=config, data={"format": "manifest", "train": 10, "val": 2, "test": 6})
    if not evaluated:
        write_checkpoint(folder, method, card)
        return folder
    paths = write_images(folder / "images")
    table = {"path": [str(p) for p in paths]}
    labels, preds = [], []
    for attr, rows in zip(task.attributes, (WEATHER, PANO)):
        classes = list(attr.classes)
        table[f"{attr.name}:true"] = [t for t, _, _ in rows]
        table[attr.name] = [q for _, q, _ in rows]
        for k, c in enumerate(classes):
            table[f"{attr.name}:p({c})"] = probabilities(rows, classes)[:, k]
        labels.append([classes.index(t) for t, _, _ in rows])
        preds.append([classes.index(q) for _, q, _ in rows])
    metrics = attribute_metrics(np.array(labels).T, np.array(preds).T, task)
    write_json(folder / "metrics.json", metrics)
    pd.DataFrame(table).to_csv(folder / "predictions.csv", index=False)
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_macro_f1": 0.2 * e} for e in (1, 2, 3)]
    write_json(folder / "history.json", history)
    if figures:
        for attr in task.attributes:
            plot_confusion(metrics["attributes"][attr.name]["confusion_matrix"], list(attr.classes),
                           folder / f"confusion_{attr.name}.png", title=attr.name)
        plot_curves(history, folder / "curves.png")
    card["metrics"] = metrics["mean"]
    write_checkpoint(folder, method, card)
    return folder


def save_run(folder: Path, method, threshold: float = 0.5) -> Path:
    """A run folder (card + checkpoint only) of an untrained `method`, any method, with
    `train.threshold` in its config (multi-label decisions read it)."""
    config = RunConfig.model_validate({"backbone": {"name": method.backbone.name, "pretrained": None},
                                       "method": {"name": method.name},
                                       "train": {"threshold": threshold}}).model_dump(mode="json")
    card = build_card(method, seed=0, config=config, data={"format": "manifest", "train": 0, "val": 0, "test": 0})
    write_checkpoint(folder, method, card)
    return folder
