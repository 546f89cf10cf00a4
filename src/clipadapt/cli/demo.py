"""`clipadapt demo`: synthetic street-view attributes end to end, offline, in minutes.

Renders a Global-StreetScapes-layout data set, then trains every method in
multi-attribute mode (all eight attributes from one backbone pass) with the embedded
tiny CLIP and prints one comparison table.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from clipadapt.backbone import create_backbone
from clipadapt.config import validate_config
from clipadapt.engine.io import write_json, write_text
from clipadapt.errors import ClipAdaptError
from clipadapt.workflow import train_run

# method -> (method params, train overrides); short schedules sized for a 2-core CPU
DEMO_METHODS: dict[str, tuple[dict, dict]] = {
    "majority": ({}, {"epochs": 0}),
    "zeroshot": ({}, {"epochs": 0}),
    "linear_probe": ({}, {"lr": 2e-3, "weight_decay": 0.0}),
    "clip_adapter": ({"blend_ratio": 0.2}, {"lr": 2e-3}),
    "coop": ({"n_ctx": 8}, {"lr": 2e-3}),
    "mhadapter": ({"beta": 0.8, "heads": 4}, {}),
}

DEMO_DATA = {"n_train": 800, "n_test": 400, "seed": 0, "image_size": 96}


def demo_config(data_root: Path, cache: Path, method: str, params: dict, train: dict) -> dict:
    """The raw config of one demo run (printed into its run folder as config.yaml)."""
    return {
        "backbone": {"name": "clipadapt-tiny", "pretrained": "embedded"},
        "data": {"format": "synthetic-gss", "root": str(data_root), "synthetic": DEMO_DATA, "val_fraction": 0.2},
        "method": {"name": method, "params": params},
        "train": {"batch_size": 64, "epochs": 30, "warmup_epochs": 2, "patience": 8, "lr": 5e-4, "seed": 42,
                  "eval_batch_size": 256, **train},
        "features": {"dir": str(cache)},
    }


def run_demo(out: Path, task: str = "gss", progress: bool = True, console: Console | None = None) -> dict:
    """Run the demo into `out`; returns {method: test metrics}."""
    if task != "gss":
        raise ClipAdaptError(f"--task {task}: this version's demo covers 'gss' (street-view attributes).")
    console = console or Console()
    out = Path(out)
    runs = out / "runs"
    if runs.exists():  # a demo re-run starts clean; the rendered data and the feature cache are kept
        shutil.rmtree(runs)
    backbone = create_backbone("clipadapt-tiny", "embedded")
    results: dict[str, dict] = {}
    for name, (params, train) in DEMO_METHODS.items():
        console.print(f"[bold]{name}[/]")
        cfg = validate_config(demo_config(out / "data", out / "cache", name, params, train), source="demo")
        outcome = train_run(cfg, runs / name, progress=progress, backbone=backbone)
        results[name] = {"metrics": outcome.metrics, "trainable_parameters": outcome.card["trainable_parameters"]}
    table = comparison_table(results)
    console.print(table)
    write_json(out / "summary.json", results)
    write_text(out / "summary.md", markdown_table(results))
    console.print(f"run folders: {runs}  (summary: {out / 'summary.md'})")
    return results


def _row(name: str, entry: dict) -> list[str]:
    m = entry["metrics"]
    per_attr = [f"{100 * a['macro_f1']:.1f}" for a in m["attributes"].values()]
    return [name, f"{entry['trainable_parameters']:,}", f"{100 * m['mean']['accuracy']:.1f}",
            f"{100 * m['mean']['macro_f1']:.1f}", *per_attr]


def _header(results: dict) -> list[str]:
    first = next(iter(results.values()))["metrics"]
    return ["method", "trainable", "mean acc", "mean macro-F1", *first["attributes"].keys()]


def comparison_table(results: dict) -> Table:
    """Rich table: one row per method, macro-F1 per attribute (test split, %)."""
    table = Table(title="Synthetic street-view attributes, test split (%; per-attribute columns: macro-F1)")
    for i, col in enumerate(_header(results)):
        table.add_column(col, justify="left" if i == 0 else "right")
    for name, entry in results.items():
        table.add_row(*_row(name, entry))
    return table


def markdown_table(results: dict) -> str:
    header = _header(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_row(n, e)) + " |" for n, e in results.items()]
    return "\n".join(lines) + "\n"
