"""`clipadapt demo`: a synthetic task end to end, offline, in minutes.

--task gss: renders a Global-StreetScapes-layout data set, then trains every method in
multi-attribute mode (all eight attributes from one backbone pass).
--task par: renders pedestrian crops with twelve PA100K attributes (multi-label) and
trains PromptPAR and its baselines.
--task unsupervised: renders look-alike birds and adapts microCLIP without labels
(cli/demo_unsupervised.py).
--task city: maps a synthetic city with a planted pattern and checks the map (cli/demo_city.py).
Both use the embedded tiny CLIP and print a comparison table; gss and par calibrate every
method on validation (gss: temperature scaling; par: Platt scaling, with each attribute's
threshold tuned for F1 on validation) and show the test ECE before -> after (par: and each
score at 0.5 -> at the tuned thresholds).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from clipadapt.backbone import open_backbone
from clipadapt.config import validate_config
from clipadapt.io import write_json, write_text
from clipadapt.errors import ClipAdaptError
from clipadapt.workflow import train_run
from clipadapt.run_files import RunFiles

# method -> (method params, train overrides); short schedules sized for a 2-core CPU
DEMO_METHODS: dict[str, tuple[dict, dict]] = {
    "majority": ({}, {"epochs": 0}),
    "zeroshot": ({}, {"epochs": 0}),
    # Unit-norm inputs give small logits: the probe needs a larger step than the adapters.
    "linear_probe": ({}, {"lr": 5e-2, "weight_decay": 0.0}),
    "clip_adapter": ({"blend_ratio": 0.2}, {"lr": 2e-3}),
    "coop": ({"n_ctx": 8}, {"lr": 2e-3}),
    "mhadapter": ({"beta": 0.8, "heads": 4}, {}),
}
DEMO_DATA = {"n_train": 800, "n_test": 400, "seed": 0, "image_size": 96}
DEMO_EPOCHS = 30

# Pedestrian attributes (multi-label): the baselines of SPEC 2 and PromptPAR with a
# fusion block sized for the tiny CLIP (the paper's is ViT-B/16's, width 768).
PAR_METHODS: dict[str, tuple[dict, dict]] = {
    "majority": ({}, {"epochs": 0}),
    "zeroshot": ({}, {"epochs": 0}),
    "linear_probe": ({}, {"lr": 5e-2, "weight_decay": 0.0}),
    "mhadapter": ({"beta": 0.8, "heads": 4}, {}),
    # No ImageNet fusion block offline: a random one is trained whole (fusion_trainable), and
    # AdamW with one warm-up for all groups suits the short schedule better than the paper's SGD.
    "promptpar": ({"fusion_width": 128, "fusion_heads": 4, "drop_path": 0.0, "fusion_trainable": True,
                   "prompt_lr_scale": 1.0, "prompt_warmup_epochs": 1},
                  {"optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "grad_clip": 10.0, "batch_size": 32,
                   "epochs": 20}),
}
PAR_DATA = {"n_train": 600, "n_test": 300, "seed": 0, "image_size": 96}
PAR_EPOCHS = 15


@dataclass(frozen=True)
class DemoTask:
    """One demo: its data, methods, schedule and how its tables are read."""

    title: str
    format: str
    data: dict
    methods: dict[str, tuple[dict, dict]]
    epochs: int
    preprocess: str
    headline: tuple[tuple[str, str], ...]  # (column title, key in metrics["mean"])
    per_attribute: str  # what the per-attribute table shows
    report_method: str
    # how the runs are calibrated and decide (train settings); the table's ECE column says which
    decisions: tuple[tuple[str, str], ...] = (("calibrate", "temperature"),)


def demo_tasks() -> dict[str, DemoTask]:
    """The demos by --task name (read at call time, so tests can shrink them)."""
    return {
        "gss": DemoTask("Synthetic street-view attributes, test split (%)", "synthetic-gss", DEMO_DATA,
                        DEMO_METHODS, DEMO_EPOCHS, "crop",
                        (("mean accuracy", "accuracy"), ("mean macro-F1", "macro_f1")), "macro_f1", "mhadapter"),
        "par": DemoTask("Synthetic pedestrian attributes, test split (%)", "synthetic-par", PAR_DATA, PAR_METHODS,
                        PAR_EPOCHS, "letterbox",
                        (("mA", "mA"), ("F1 (mean of samples)", "f1_mean_of_samples"), ("F1 (of means)", "f1_of_means"),
                         ("mean attribute F1", "mean_attribute_f1")), "balanced_accuracy", "promptpar",
                        # a per-attribute bias (Platt) for a shifted model; thresholds tuned for F1 on validation,
                        # so each headline cell reads "at 0.5 -> at the tuned thresholds"
                        (("calibrate", "platt"), ("thresholds", "f1"))),
    }


def demo_config(task: DemoTask, data_root: Path, cache: Path, method: str, params: dict, train: dict) -> dict:
    """The raw config of one demo run (printed into its run folder as config.yaml)."""
    return {
        "backbone": {"name": "clipadapt-tiny", "pretrained": "embedded", "preprocess": task.preprocess},
        "data": {"format": task.format, "root": str(data_root), "synthetic": task.data, "val_fraction": 0.2},
        "method": {"name": method, "params": params},
        # calibrate: fitted on validation after selection (the table's ECE before -> after); it never
        # changes a decision, so the scores at the fixed threshold are those of the run without
        "train": {"batch_size": 64, "epochs": task.epochs, "warmup_epochs": 2, "patience": 8, "lr": 5e-4, "seed": 42,
                  "eval_batch_size": 256, **dict(task.decisions), **train},
        "features": {"dir": str(cache)},
    }


def run_demo(out: Path, task: str = "gss", progress: bool = True, console: Console | None = None,
             seeds: tuple[int, ...] | None = None) -> dict:
    """Run the demo `task` (gss | par | unsupervised | city) into `out`; returns {method: test metrics}. Also
    writes summary.md / summary.json and an HTML report of the featured method's run."""
    tasks = demo_tasks()
    if task == "unsupervised":  # label-free adaptation: its own runner and table
        from clipadapt.cli.demo_unsupervised import run_unsupervised_demo

        return run_unsupervised_demo(out, progress=progress, console=console, seeds=seeds or (0,))
    if seeds is not None:
        raise ClipAdaptError("--seeds repeats the label-free runs of --task unsupervised; the gss, par and city demos "
                             "train with their fixed seed.")
    if task == "city":  # a map checked against a planted pattern: its own runner and table
        from clipadapt.cli.demo_city import run_city_demo

        return run_city_demo(out, progress=progress, console=console)
    if task not in tasks:
        raise ClipAdaptError(f"--task {task}: choose one of {sorted(tasks) + ['unsupervised', 'city']} (gss: "
                             "street-view attributes, par: pedestrian attributes, unsupervised: microCLIP without "
                             "labels, city: a map of a synthetic city).")
    spec = tasks[task]
    console = console or Console()
    out = Path(out)
    runs = out / "runs"
    if runs.exists():  # a demo re-run starts clean; the rendered data and the feature cache are kept
        shutil.rmtree(runs)
    backbone = open_backbone("clipadapt-tiny", "embedded")
    results: dict[str, dict] = {}
    for name, (params, train) in spec.methods.items():
        console.print(f"[bold]{name}[/]")
        cfg = validate_config(demo_config(spec, out / "data", out / "cache", name, params, train), source="demo")
        outcome = train_run(cfg, runs / name, progress=progress, backbone=backbone)
        results[name] = {"metrics": outcome.metrics, "trainable_parameters": outcome.card.trainable_parameters,
                         "calibration": outcome.card.calibration}
    report = runs / spec.report_method / RunFiles.REPORT  # written by train_run, like every run's
    for table in comparison_table(results, spec):
        console.print(table)
    write_json(out / "summary.json", results)
    write_text(out / "summary.md", markdown_table(results, spec))
    console.print(f"run folders: {runs}  (summary: {out / 'summary.md'}; HTML report: {report})")
    return results


def summary_rows(results: dict, task: DemoTask) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the headline table: one row per method (test split, %). With tuned
    thresholds a cell reads "at the fixed threshold -> at the tuned ones"."""
    tuned = dict(task.decisions).get("thresholds", "fixed") != "fixed"
    ece_title = ECE_TITLE if dict(task.decisions).get("calibrate") == "temperature" else "ECE before -> after Platt"
    header = ["method", "trainable params",
              *(f"{title} 0.5 -> tuned" if tuned else title for title, _ in task.headline), ece_title]
    rows = []
    for name, entry in results.items():
        rows.append([name, f"{entry['trainable_parameters']:,}", *(headline_cell(entry["metrics"], key)
                                                                    for _, key in task.headline),
                     ece_cell(entry["metrics"])])
    return header, rows


def headline_cell(metrics: dict, key: str) -> str:
    """One headline score (%): "fixed -> tuned" when the run tuned its thresholds, else one number."""
    compared = metrics.get("thresholds")
    if compared and key in compared["fixed"]:
        return f"{100 * compared['fixed'][key]:.1f} -> {100 * compared['tuned'][key]:.1f}"
    value = metrics["mean"].get(key, (metrics.get("multilabel") or {}).get(key))
    return "n/a" if value is None else f"{100 * value:.1f}"


ECE_TITLE = "ECE before -> after T"


def ece_cell(metrics: dict) -> str:
    """Test ECE (%, 15 bins) of the raw probabilities -> after calibration (temperature or
    Platt); one number when the fit changed nothing or the run was not calibrated."""
    scaled = (metrics.get("calibration") or {}).get("mean")
    if scaled and scaled.get("ece_before") is not None:
        return f"{100 * scaled['ece_before']:.1f} -> {100 * scaled['ece_after']:.1f}"
    ece = metrics["mean"].get("ece")
    return "n/a" if ece is None else f"{100 * ece:.1f}"


def _attribute_score(metrics: dict, attribute: str, key: str) -> float:
    if "multilabel" in metrics:  # the field's per-attribute (label-based) score
        row = next(r for r in metrics["multilabel"]["per_attribute"] if r["attribute"] == attribute)
        return row[key]
    return metrics["attributes"][attribute][key]


def attribute_rows(results: dict, task: DemoTask) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-attribute table (%), one row per attribute, one column
    per method (transposed, so the attributes fit an 80-column terminal)."""
    methods = list(results)
    attributes = list(next(iter(results.values()))["metrics"]["attributes"])
    rows = [[attr, *(f"{100 * _attribute_score(results[m]['metrics'], attr, task.per_attribute):.1f}" for m in methods)]
            for attr in attributes]
    return ["attribute", *methods], rows


def comparison_table(results: dict, task: DemoTask) -> list[Table]:
    """Two rich tables: the headline per method and the per-attribute score."""
    what = {"macro_f1": "Macro-F1", "balanced_accuracy": "Balanced accuracy (mA's terms)"}[task.per_attribute]
    tables = []
    for title, (header, rows) in ((task.title, summary_rows(results, task)),
                                  (f"{what} per attribute (%)", attribute_rows(results, task))):
        # Headers break at "_" and the edges carry no padding, so the per-attribute table
        # fits an 80-column terminal without cutting names.
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
        for i, col in enumerate(header):
            table.add_column(col if i == 0 else col.replace("_", "\n"), justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return tables


def markdown_table(results: dict, task: DemoTask) -> str:
    """The same two tables in Markdown (summary.md)."""
    parts = []
    for header, rows in (summary_rows(results, task), attribute_rows(results, task)):
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
