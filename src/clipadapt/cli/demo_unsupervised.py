"""`clipadapt demo --task unsupervised`: label-free adaptation (microCLIP, SPEC 3) on the
synthetic look-alike birds (each species with its own body colour, which no description
names), next to zero-shot CLIP and the self-training baseline that pools [CLS] only (no
SOAP).

Both self-trained models see the training images WITHOUT their labels; the hidden labels
only score the pseudo-labels in each run's history.json. A third run, marked as not
label-free, trains the same parts with the same recipe on the TRUE labels: the most
self-training could reach with perfect pseudo-labels, i.e. the headroom the backbone's
features leave over zero-shot. The table is the test split.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from clipadapt.backbone import open_backbone
from clipadapt.config import validate_config
from clipadapt.io import write_json, write_text
from clipadapt.workflow import adapt_run
from clipadapt.errors import ClipAdaptError
from clipadapt.metrics.aggregate import aggregate_seeds, format_mean_std

# Ten look-alike classes; the training images are unlabelled. Each species has its own
# body colour that no description names (species_tones): with the shared palette the
# tiny model's features held nothing beyond zero-shot (a linear probe on TRUE labels
# scored no better), so no label-free method could show a gain there.
UNSUPERVISED_DATA = {"n_train_per_class": 100, "n_test_per_class": 30, "seed": 0, "image_size": 64,
                     "species_tones": True}
UNSUPERVISED_TRAIN = {"epochs": 10, "batch_size": 64, "lr": 1e-3, "seed": 0}
# The recipe for a 64-pixel, 1,000-image task, shared by every run (the upper bound too):
# no RandAugment and milder strong crops (at 64 px they wipe out the small cues), and a
# fairness weight of 5, as with the SPEC's weight of 1 the pseudo-labels pile some 40% of
# the images onto one class and self-training collapses towards it.
UNSUPERVISED_RECIPE: dict = {"randaugment": None, "strong_scale": [0.6, 1.0], "fairness_weight": 5.0}
# run name -> microCLIP params (the ablation switch of SPEC 3 for the baseline)
UNSUPERVISED_RUNS: dict[str, dict] = {
    "selftrain_cls": {**UNSUPERVISED_RECIPE, "use_soap": False},
    "microclip": dict(UNSUPERVISED_RECIPE),
}
# The diagnostic upper bound (true labels replace the pseudo-labels; not label-free).
UPPER_BOUND_RUNS: dict[str, dict] = {"microclip_true_labels": dict(UNSUPERVISED_RECIPE)}
TEMPLATES = ["a photo of a {}, a type of bird."]
# Rows of the table: (label, run whose comparison holds it, key in that comparison)
TABLE_ROWS = (
    ("zero-shot CLIP, templates", "microclip", "zeroshot_templates"),
    ("zero-shot CLIP, descriptions", "microclip", "zeroshot_descriptions"),
    ("self-training, [CLS] only (no SOAP)", "selftrain_cls", "microclip"),
    ("microCLIP (SOAP + TokenFusion)", "microclip", "microclip"),
    ("upper bound: same recipe, TRUE labels (not label-free)", "microclip_true_labels", "microclip"),
)


def unsupervised_config(data_root: Path, params: dict, train: dict) -> dict:
    """The raw config of one demo adapt run (written into its run folder as config.yaml)."""
    return {
        "backbone": {"name": "clipadapt-tiny", "pretrained": "embedded"},
        "data": {"format": "synthetic-finegrained", "root": str(data_root), "synthetic": dict(UNSUPERVISED_DATA)},
        "method": {"name": "microclip", "params": {"templates": TEMPLATES, **params}},
        "train": {**UNSUPERVISED_TRAIN, **train},
    }


def run_unsupervised_demo(out: Path, progress: bool = True, console: Console | None = None,
                          seeds: tuple[int, ...] = (0,)) -> dict:
    """Render the birds into `out`/data, self-train both models without labels (and the
    true-label upper bound, UPPER_BOUND_RUNS) once per seed in `seeds` (the
    self-training's randomness: views, order; data and weights stay),
    print and write (summary.md / summary.json) the comparison; returns {row label:
    {accuracy, macro_f1, per_seed}} with the mean over seeds."""
    console = console or Console()
    out = Path(out)
    seeds = tuple(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ClipAdaptError("--seeds: give at least one seed, e.g. --seeds 0,1,2.")
    runs = out / "runs"
    if runs.exists():  # a re-run starts clean; the rendered images are kept
        shutil.rmtree(runs)
    per_seed: dict[int, dict] = {}
    for seed in seeds:
        comparisons: dict[str, dict] = {}
        plan = [(name, params, False) for name, params in UNSUPERVISED_RUNS.items()]
        plan += [(name, params, True) for name, params in UPPER_BOUND_RUNS.items()]
        for name, params, true_labels in plan:
            folder = name if len(seeds) == 1 else f"{name}/seed-{seed}"  # as `train --seeds` lays them out
            console.print(f"[bold]{folder}[/] " + ("(TRUE labels: the upper bound)" if true_labels else "(no labels)"))
            cfg = validate_config(unsupervised_config(out / "data", params, {"seed": seed}), source="demo")
            # Self-training adapts the backbone's LayerNorms in place: every run starts from fresh weights.
            backbone = open_backbone("clipadapt-tiny", "embedded")
            outcome = adapt_run(cfg, runs / folder, progress=progress, backbone=backbone, true_labels=true_labels)
            comparisons[name] = outcome.comparison
        per_seed[seed] = {label: comparisons[run][key] for label, run, key in TABLE_ROWS
                          if key in comparisons.get(run, {})}
    results = mean_over_seeds(per_seed)
    console.print(unsupervised_table(results))
    write_json(out / "summary.json", results)
    write_text(out / "summary.md", unsupervised_markdown(results))
    console.print(f"run folders: {runs}  (summary: {out / 'summary.md'})")
    return results


def mean_over_seeds(per_seed: dict[int, dict]) -> dict:
    """{label: {accuracy, macro_f1 (means), accuracy_std (sample sd), per_seed: {seed: {accuracy, macro_f1}}}}."""
    summary = aggregate_seeds(list(per_seed.values()))
    return {label: {"accuracy": stats["accuracy"]["mean"], "macro_f1": stats["macro_f1"]["mean"],
                    "accuracy_std": stats["accuracy"]["std"],
                    "per_seed": {str(seed): per_seed[seed][label] for seed in per_seed}}
            for label, stats in summary.items()}


def _seed_count(results: dict) -> int:
    return len(next(iter(results.values()))["per_seed"]) if results else 1


def unsupervised_table(results: dict) -> Table:
    """The comparison as a rich table (test split, %; mean and sd over seeds when several)."""
    n = _seed_count(results)
    title = ("Synthetic look-alike birds, test split (%), training labels unseen but by the upper bound"
             + (f", mean of {n} seeds" if n > 1 else ""))
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("model", "accuracy", "macro-F1"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for label, row in results.items():
        table.add_row(label, _accuracy_cell(row, n), f"{100 * row['macro_f1']:.1f}")
    return table


def _accuracy_cell(row: dict, n: int) -> str:
    return format_mean_std(row["accuracy"], row["accuracy_std"], digits=1) if n > 1 else f"{100 * row['accuracy']:.1f}"


def unsupervised_markdown(results: dict) -> str:
    """The comparison as a Markdown table (summary.md)."""
    n = _seed_count(results)
    lines = ["| model | accuracy | macro-F1 |", "|---|---|---|"]
    lines += [f"| {label} | {_accuracy_cell(r, n)} | {100 * r['macro_f1']:.1f} |" for label, r in results.items()]
    if n > 1:
        lines.append(f"\nMean (± sd) over self-training seeds {', '.join(next(iter(results.values()))['per_seed'])}.")
    return "\n".join(lines) + "\n"
